"""The turn runner: one conversational turn as an async stream of typed events.

ASR -> retrieval -> LLM (streamed) -> sentences -> per-sentence translation -> per-sentence TTS.
The LLM runs as a producer task feeding whole sentences into a queue, so translation and
speech of sentence 1 overlap with the model writing sentence 2: time to first audio is
bounded by the first sentence, not the whole answer.

The runner only needs objects with the stage interfaces of `samvad.providers.base`; in-process
they are the engines themselves, on Ray they are adapters over deployment handles.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from samvad.audio import Audio, decode_audio
from samvad.contracts import (
    ChatMessage,
    GuardrailFlag,
    LLMResponse,
    Passage,
    ProviderCall,
    ResponseMetadata,
    TokenUsage,
    Transcript,
)
from samvad.cost import price, totals
from samvad.errors import InputError, ProviderError, SamvadError, public_message
from samvad.events import (
    AudioEvent,
    ErrorEvent,
    GuardrailEvent,
    ResponseDeltaEvent,
    RetrievalEvent,
    StageTiming,
    TranscriptEvent,
    TurnDoneEvent,
    TurnEvent,
)
from samvad.followup import search_query
from samvad.guardrails.attack_model import AttackLibrary
from samvad.guardrails.policy import Guardrails
from samvad.language import AUTO, check_language, choose, detect_text
from samvad.providers.base import (
    AudioChunk,
    CallLog,
    ChatRequest,
    LanguageGuess,
    SpeechRequest,
    TranslationRequest,
    TranslationResult,
)
from samvad.sentences import SentenceAggregator
from samvad.settings import Settings

ANSWER_LANGUAGE = "en-IN"  # the language answers are written in (the knowledge base's), then translated


log = logging.getLogger("samvad.turn")


class TextLanguageId(Protocol):
    async def identify(self, text: str, calls: CallLog) -> LanguageGuess | None:
        """Language and script of typed text (the call recorded in `calls`); None or a
        `SamvadError` when it could not say."""
        ...


class PassageRetriever(Protocol):
    async def alookup(
        self,
        text: str,
        library: AttackLibrary | None,
        k: int,
        query: str | None = None,
        knowledge_base: str | None = None,
    ) -> tuple[float | None, list[Passage]]:
        """(the injection check's score of `text` against `library`, or None; the top-`k`
        passages for `query`, default `text`, from `knowledge_base`, None the default) in one call.
        A knowledge base it does not serve is a `retrieval_unavailable` error, never another's."""
        ...


# What the runner calls of each stage: a provider of `samvad.providers.base`, a failover chain
# over several, or (on Ray) an adapter over the stage's deployment handle (actors/remote.py).
class Transcribes(Protocol):
    async def transcribe(self, audio: Audio, language: str | None, calls: CallLog) -> Transcript: ...


class Chats(Protocol):
    def stream(self, request: ChatRequest, calls: CallLog) -> AsyncIterator[str]: ...


class Translates(Protocol):
    async def translate(self, request: TranslationRequest, calls: CallLog) -> TranslationResult: ...


class Speaks(Protocol):
    def stream(self, request: SpeechRequest, calls: CallLog) -> AsyncIterator[AudioChunk]: ...


@dataclass
class Engines:
    stt: Transcribes
    retriever: PassageRetriever
    llm: Chats
    translator: Translates
    tts: Speaks
    language_id: TextLanguageId | None = None  # typed text of an "auto" turn (else offline detection)


class TurnRequest(BaseModel):
    """One turn: either audio (any libsndfile format) or text, plus the conversation so far."""

    turn_id: str  # made by the server (unique per turn); the client's X-Request-ID is `request_id`
    request_id: str | None = None  # correlation id: in logs and in every stage call of the turn
    channel: Literal["rest", "voice"] = "rest"  # voice: what the caller heard is settled by the call
    idempotent: bool = False  # an Idempotency-Key stands for this turn: its answer is stored with it
    tenant: str | None = None  # the API key's id: per-tenant caches
    audio: bytes | None = None
    text: str | None = None
    language: str = "en-IN"
    mode: str = "formal"
    voice: str | None = None
    output_script: str | None = None  # e.g. "roman" for romanised Hindi (Sarvam translate)
    knowledge_base: str | None = None  # the session's (rag.knowledge_bases); None: the default one
    history: list[ChatMessage] = Field(default_factory=list)
    speak: bool = True  # False: text answer only (no TTS)
    # With language "auto": what to answer in when detection is unsure (the conversation's last).
    fallback_language: str | None = None
    # Or a transcript made before the turn (the voice session's early ASR), with its calls; or,
    # with audio, the calls of a realtime socket that failed on it (billed all the same).
    transcript: Transcript | None = None
    transcript_calls: list[ProviderCall] = Field(default_factory=list)


@dataclass
class _Spoken:
    """Per-turn output so far: the sentences said and the audio chunk counter."""

    texts: list[str] = field(default_factory=list)
    seq: int = -1
    first_audio_at: float | None = None  # perf_counter() of the first audio chunk


@dataclass
class PreparedTurn:
    request: TurnRequest
    audio: Audio | None
    text: str | None
    detected: tuple[str | None, float | None] | None = None  # language "auto", typed text: (language, confidence)


def prepare_turn(request: TurnRequest, s: Settings) -> PreparedTurn:
    """Validate a turn's input and decode its audio; raises `InputError` with an actionable
    message. Needs no engine: the ingress runs it before it creates a session for the turn."""
    check_language(request.language, s.languages)
    if sum(x is not None for x in (request.audio, request.text, request.transcript)) != 1:
        raise InputError("send exactly one of audio or text", code="invalid_input")
    if request.transcript is not None:
        return PreparedTurn(request, None, None)
    if request.text is not None:
        text = request.text.strip()
        if not text:
            raise InputError("the text is empty: send the caller's question", code="text_empty")
        if "\x00" in text:  # PostgreSQL text cannot hold NUL: refuse it here, not as a 500 at the write
            raise InputError("the text contains a NUL character", code="invalid_text")
        if len(text) > s.max_text_chars:
            raise InputError(
                f"the text has {len(text)} characters; the limit is {s.max_text_chars}", code="text_too_long"
            )
        if request.language == AUTO:  # typed text: its script says its language, before anything is stored
            fallback = request.fallback_language or s.default_language
            code, sure, romanised = detect_text(text, fallback)
            language = choose(code, sure, fallback, s.languages, s.auto_language_min_confidence)
            script = request.output_script or ("roman" if romanised and language == code else None)
            return PreparedTurn(
                request.model_copy(update={"language": language, "output_script": script}),
                None,
                text,
                detected=(code, sure),
            )
        return PreparedTurn(request, None, text)
    audio = decode_audio(
        request.audio or b"",
        target_rate=s.audio.sample_rate,
        max_seconds=s.audio.max_seconds,
        min_seconds=s.audio.min_seconds,
    )
    return PreparedTurn(request, audio, None)


class TurnRunner:
    def __init__(self, engines: Engines, settings: Settings) -> None:
        self.engines = engines
        self.settings = settings
        self.guardrails = Guardrails.from_file(settings.guardrails_file)

    async def _identify(
        self, req: TurnRequest, text: str, code: str | None, sure: float | None, calls: CallLog
    ) -> tuple[TurnRequest, str | None, float | None]:
        """Typed text's language from the identifier: romanised Tamil or Bengali reads as English
        to the offline detection. Answered in the language's own script unless the caller wrote
        it in Latin letters (then in Latin, as offline Hinglish is). Its failure keeps the offline
        guess (the failed call is still recorded)."""
        if self.engines.language_id is None:
            return req, code, sure
        try:
            guess = await self.engines.language_id.identify(text, calls)
        except SamvadError:
            guess = None
        if guess is None or guess.language_code not in self.settings.languages:
            return req, code, sure
        found = guess.language_code
        roman = guess.script_code == "Latn" and found != "en-IN"
        script = "roman" if roman else (None if req.output_script == "roman" else req.output_script)
        # The identifier reports no confidence: None, not a made-up 1.0, is stored with the message.
        return req.model_copy(update={"language": found, "output_script": script}), found, None

    def _silent(self, audio: Audio) -> bool:
        floor = self.settings.audio.silence_dbfs
        return floor is not None and audio.peak_dbfs < floor

    def prepare(self, request: TurnRequest) -> PreparedTurn:
        """Validate the request; raises `InputError` with an actionable message."""
        return prepare_turn(request, self.settings)

    async def _speak(
        self, req: TurnRequest, sentence: str, state: _Spoken, calls: CallLog, flags: list[str]
    ) -> AsyncIterator[TurnEvent]:
        """Translate one sentence into the caller's language and register, then synthesise it."""
        e = self.engines
        if _base(req.language) == _base(ANSWER_LANGUAGE):  # already in the caller's language: no hop
            tr = TranslationResult(text=sentence, language_code=req.language)
        else:
            tr = await e.translator.translate(
                TranslationRequest(
                    text=sentence,
                    source_language=ANSWER_LANGUAGE,
                    target_language=req.language,
                    mode=req.mode,
                    output_script=req.output_script,
                    tenant=req.tenant,
                ),
                calls,
            )
        flags.extend(f for f in tr.flags if f not in flags)
        index = len(state.texts)
        state.texts.append(tr.text)
        yield ResponseDeltaEvent(
            turn_id=req.turn_id, index=index, text=tr.text, language_code=tr.language_code, source_text=sentence
        )
        if req.speak:
            voice = req.voice if tr.language_code == req.language else None
            previous = state.texts[-2] if len(state.texts) > 1 else None  # this answer's sentence before
            speech = SpeechRequest(
                text=tr.text, language=tr.language_code, voice=voice, tenant=req.tenant, previous_text=previous
            )
            async for chunk in e.tts.stream(speech, calls):
                state.seq += 1
                if state.first_audio_at is None:
                    state.first_audio_at = time.perf_counter()
                yield AudioEvent(
                    turn_id=req.turn_id, index=index, seq=state.seq, sample_rate=chunk.sample_rate, audio=chunk.pcm16
                )

    async def run(self, request: TurnRequest) -> AsyncIterator[TurnEvent]:
        prepared = self.prepare(request)  # raises InputError before any event
        async for event in self.run_prepared(prepared):
            yield event

    async def run_prepared(self, prepared: PreparedTurn) -> AsyncIterator[TurnEvent]:
        req, e = prepared.request, self.engines
        tid, t0 = req.turn_id, time.perf_counter()
        calls: CallLog = []
        flags: list[str] = []
        transcript: Transcript | None = None
        spoken = _Spoken()
        sources: list[str] = []
        guard_flags: list[GuardrailFlag] = []

        def done(outcome: Literal["complete", "failed", "interrupted"]) -> TurnDoneEvent:
            priced = [price(c, self.settings.pricing) for c in calls]
            llm_call = next((c for c in priced if c.stage == "llm"), None)
            return TurnDoneEvent(
                turn_id=tid,
                outcome=outcome,
                transcript=transcript,
                response=LLMResponse(
                    response_text=" ".join(spoken.texts),
                    guardrail_flags=guard_flags,
                    metadata=ResponseMetadata(
                        tokens=_tokens(priced),
                        provider=llm_call.provider if llm_call else "",
                        model=llm_call.model if llm_call else "",
                        sources=sources,
                        context_messages=len(history),
                    ),
                ),
                language_code=req.language,
                stages=_stage_timings(priced),
                first_audio_ms=None if spoken.first_audio_at is None else (spoken.first_audio_at - t0) * 1000,
                calls=priced,
                flags=flags
                + [f for f in _failovers(priced) if f not in flags]
                + (["answer_truncated"] if any(c.stage == "llm" and c.truncated for c in priced) else []),
                cost=totals(priced),
            )

        history = req.history[-self.settings.llm.history_turns :] if self.settings.llm.history_turns else []
        try:
            auto = req.language == AUTO
            fallback = req.fallback_language or self.settings.default_language
            # Calls made for this utterance before the turn: its early transcription, or a realtime
            # socket that failed (what it was sent is billed even though the turn transcribes again).
            calls.extend(req.transcript_calls)
            if req.transcript is not None:
                transcript = req.transcript
            elif prepared.audio is not None and self._silent(prepared.audio):
                transcript = Transcript(text="", language_code=fallback if auto else req.language, confidence=0.0)
            elif prepared.audio is not None:
                transcript = await e.stt.transcribe(prepared.audio, None if auto else req.language, calls)
            elif prepared.detected is not None:  # typed text in an "auto" turn: prepared chose its language
                code, sure = prepared.detected
                if e.language_id is not None:  # a cloud identifier, when configured, has the last word
                    req, code, sure = await self._identify(req, prepared.text or "", code, sure, calls)
                transcript = Transcript(
                    text=prepared.text or "",
                    language_code=code or req.language,
                    confidence=1.0,
                    language_confidence=sure,
                )
            else:
                transcript = Transcript(text=prepared.text or "", language_code=req.language, confidence=1.0)
            if auto:  # speech: from here on the turn speaks the language detected in this utterance
                req = req.model_copy(
                    update={
                        "language": choose(
                            transcript.language_code,
                            transcript.language_confidence,
                            fallback,
                            self.settings.languages,
                            self.settings.auto_language_min_confidence,
                        )
                    }
                )
            yield TranscriptEvent(turn_id=tid, transcript=transcript)
            if not transcript.text.strip():
                yield ErrorEvent(
                    turn_id=tid, code="no_speech", message="no speech was recognised; please repeat", status=422
                )
                yield done("failed")
                return

            verdict = self.guardrails.check_input(transcript.text)
            passages: list[Passage] = []
            if verdict.reply is None:
                # One Retriever call: the attack check and the search share one encoding.
                library = self.guardrails.input.injection.attack_library
                t_ret = time.perf_counter()
                # A follow-up ("what about the PIN?") is searched with the question it follows.
                query = search_query(verdict.text, [m.content for m in history if m.role == "user"])
                store = "stub" if self.settings.rag.retriever == "stub" else self.settings.rag.store
                failed: str | None = None
                try:
                    attack_score, passages = await e.retriever.alookup(
                        verdict.text,
                        library,
                        self.settings.rag.top_k,
                        query if query != verdict.text else None,
                        req.knowledge_base,
                    )
                except ProviderError as exc:
                    if exc.code != "retrieval_unavailable":
                        raise
                    # The knowledge base is down: say so in the caller's language rather than
                    # fail the turn or let the model answer without its documents.
                    log.warning("turn %s: %s", tid, exc.message)
                    attack_score, passages, failed = None, [], exc.code
                    unavailable = GuardrailFlag(check="retrieval_unavailable", severity="medium", action="refuse")
                    verdict = verdict.model_copy(
                        update={
                            "reply": self.guardrails.replies.retrieval_unavailable,
                            "flags": [*verdict.flags, unavailable],
                            "action": "refuse",
                        }
                    )
                calls.append(
                    ProviderCall(
                        stage="retrieval",
                        provider=store,
                        model="local",
                        latency_ms=(time.perf_counter() - t_ret) * 1000,
                        outcome="ok" if failed is None else "error",
                        error=failed,
                    )
                )
                if (similar := self.guardrails.check_attack_score(attack_score)) is not None:
                    verdict = similar.model_copy(update={"text": verdict.text, "flags": verdict.flags + similar.flags})
                    passages = []
            guard_flags.extend(verdict.flags)
            yield GuardrailEvent(turn_id=tid, flags=verdict.flags, redacted_text=verdict.text, action=verdict.action)
            if verdict.reply is None and (off_topic := self.guardrails.check_retrieval(passages)) is not None:
                guard_flags.extend(off_topic.flags)
                verdict = off_topic
            if verdict.reply is None:
                # Only passages an answer is grounded in reach the caller: a refused or off-topic
                # question shows none (else any key could page through the knowledge base).
                sources = list(dict.fromkeys(p.source for p in passages))
                yield RetrievalEvent(turn_id=tid, passages=passages)
            if verdict.reply is not None:  # refusal or escalation: a fixed reply, no model call
                answer = _single(verdict.reply)
            else:
                chat = ChatRequest(
                    messages=[*history, ChatMessage(role="user", content=verdict.text)], passages=passages
                )
                answer = _sentences(e.llm, chat, calls)
            async for sentence in answer:
                if verdict.reply is None:  # checked before it is spoken
                    out = self.guardrails.check_output(sentence, passages)
                    guard_flags.extend(out.flags)
                    if out.text is None:
                        continue
                    sentence = out.text
                async for event in self._speak(req, sentence, spoken, calls, flags):
                    yield event
            if not spoken.texts:  # every sentence failed the output checks: say so rather than nothing
                async for event in self._speak(req, self.guardrails.replies.fallback, spoken, calls, flags):
                    yield event
        except SamvadError as exc:
            log.warning("turn %s failed: %s: %s", tid, exc.code, exc.message)
            yield ErrorEvent(
                turn_id=tid, code=exc.code, message=public_message(exc), retryable=exc.retryable, status=exc.status
            )
            yield done("failed")
            return
        yield done("complete")


def _base(language: str) -> str:
    return language.split("-")[0].lower()


async def _single(text: str) -> AsyncIterator[str]:
    yield text


async def _sentences(llm: Chats, chat: ChatRequest, calls: CallLog) -> AsyncIterator[str]:
    """Run the LLM as a producer task and yield whole sentences as soon as each is complete."""
    queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()

    async def produce() -> None:
        agg = SentenceAggregator()
        try:
            async for delta in llm.stream(chat, calls):
                for s in agg.push(delta):
                    queue.put_nowait(s)
            # An answer stopped at the token limit ends with its last whole sentence: the words
            # after it would be spoken cut off mid-thought (the turn is flagged answer_truncated).
            if not (calls and calls[-1].stage == "llm" and calls[-1].truncated):
                for s in agg.flush():
                    queue.put_nowait(s)
            queue.put_nowait(None)
        except BaseException as exc:  # delivered to the consumer, which raises it
            queue.put_nowait(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    task = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _failovers(calls: list[ProviderCall]) -> list[str]:
    """`failover:<stage>:<failed>-><served>` for each stage where a provider failed and the next
    one in the chain answered."""
    out = []
    for stage in dict.fromkeys(c.stage for c in calls):
        failed = [c.provider for c in calls if c.stage == stage and c.outcome == "error"]
        served = [c.provider for c in calls if c.stage == stage and c.outcome == "ok" and c.provider not in failed]
        if failed and served:
            out.append(f"failover:{stage}:{failed[0]}->{served[0]}")
    return out


def _tokens(calls: list[ProviderCall]) -> TokenUsage:
    llm = [c for c in calls if c.stage == "llm"]
    return TokenUsage(
        input=sum(c.usage.input_tokens for c in llm),
        output=sum(c.usage.output_tokens for c in llm),
        cached=sum(c.usage.cached_tokens for c in llm),
    )


def _stage_timings(calls: list[ProviderCall]) -> dict[str, StageTiming]:
    """Per stage: ttfb of its first call, total time across its calls (one per sentence for
    translation and TTS)."""
    out: dict[str, StageTiming] = {}
    for c in calls:
        t = out.setdefault(c.stage, StageTiming(ttfb_ms=c.ttfb_ms if c.ttfb_ms is not None else c.latency_ms))
        t.total_ms = round(t.total_ms + c.latency_ms, 3)
    return out
