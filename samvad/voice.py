"""One live voice call over a WebSocket: VAD endpointing where the audio arrives, turns started
on whole utterances, audio paced to real time, barge-in and backchannels.

Plain Python over a Starlette WebSocket; the ingress injects how a turn is run, how what the
caller heard is settled, and how a short utterance is transcribed (Sessions and ASR handles on
Ray). This call is the one place that decides what the caller heard: it knows what audio it sent."""

from __future__ import annotations

import asyncio
import audioop
import contextlib
import json
import logging
import re
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocketDisconnect

from samvad import metrics
from samvad.audio import Audio, float_to_pcm16, pcm16_to_float, wav_bytes
from samvad.call_budget import CallBudget, OverBudget
from samvad.contracts import ProviderCall, Transcript
from samvad.errors import InputError, SamvadError
from samvad.events import AudioEvent, ErrorEvent, ResponseDeltaEvent, TranscriptEvent, TurnDoneEvent, TurnEvent
from samvad.language import AUTO, check_language
from samvad.protocol import (
    CLOSE_IDLE,
    CLOSE_SERVICE_RESTART,
    CLOSE_SESSION_TOO_LONG,
    CLOSE_TOO_BIG,
    CLOSE_TOO_MANY_SESSIONS,
    AudioFormat,
    Backchannel,
    Ping,
    Pong,
    ResponseCancel,
    ResponseCancelled,
    SessionClosing,
    SessionStart,
    SessionUpdate,
    TextInput,
    VadEvent,
    client_message,
)
from samvad.providers.base import SpeechStream
from samvad.providers.listener import Listener
from samvad.providers.local.vad import Endpointer, SileroVad, SpeechEnded, SpeechStarted, VadBatcher
from samvad.settings import Settings, VoiceSettings
from samvad.turn import TurnRequest
from samvad.uncancelled import uncancelled

log = logging.getLogger("samvad.voice")

StartTurn = Callable[[TurnRequest], AsyncIterator[TurnEvent]]
# (turn id, heard text, complete): what the caller heard of a spoken answer, for the record.
Settle = Callable[[str, str, bool], Awaitable[None]]
# Audio -> (transcript, the provider calls made): an ASR call from the ingress, not the actor.
Transcribe = Callable[[Audio, str | None], Awaitable[tuple[Transcript, list[ProviderCall]]]]
# Charges one turn to the caller's rate limit; raises RateLimitedError (or another SamvadError).
Charge = Callable[[], Awaitable[None]]
# Audio -> a transcript of speech still going on, or None (no idle engine offers one).
Partial = Callable[[Audio, str | None], Awaitable[Transcript | None]]


class CallSocket(Protocol):
    """What a call reads and writes: a Starlette WebSocket (browsers), or a carrier's media
    stream made to look like one (samvad.telephony.bridge.PhoneSocket)."""

    async def receive(self) -> Any: ...
    async def send_text(self, data: str) -> None: ...
    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class CallState(BaseModel):
    """What a live call's turns are asked in (the session's row, then `session.update`)."""

    language: str
    mode: str
    voice: str | None = None
    output_script: str | None = None
    knowledge_base: str | None = None  # the session's, fixed for its life
    tenant: str | None = None  # the API key's id, for per-tenant caches


@dataclass
class _Playing:
    """The turn whose answer is going out: what audio was sent, per sentence."""

    turn_id: str
    task: asyncio.Task[None] | None = None
    sentences: dict[int, str] = field(default_factory=dict)
    sent_seconds: float = 0.0
    first_audio_at: float | None = None
    speech_ended_at: float | None = None  # when the caller stopped speaking (voice turns)
    complete: set[int] = field(default_factory=set)  # sentences whose audio was all sent
    done: bool = False
    outcome: str | None = None  # its turn.done's
    broken: bool = False  # its stream failed (a host died, the line dropped while sending)
    settled: tuple[str, bool] | None = None  # what was last recorded as heard, and whether complete

    def playing_until(self) -> float:
        return (self.first_audio_at or time.monotonic()) + self.sent_seconds

    def heard_text(self, played: set[int] | None = None) -> str:
        """The sentences whose audio was all sent or, where the line reports what it played
        (a phone carrier's marks), the ones it played."""
        heard = self.complete if played is None else played
        return " ".join(self.sentences[i] for i in sorted(heard) if i in self.sentences)


@dataclass
class _Early:
    """ASR started on the utterance so far after a short silence, before the end was declared.
    Valid only for the same speech (`speech_frames`): if the caller went on, it is discarded."""

    speech_frames: int
    turn_id: str  # the turn it becomes, so that the partial and final transcripts share it
    task: asyncio.Task[tuple[Transcript, list[ProviderCall]]] | None = None
    stale: bool = False  # the caller went on speaking


# Words after which a caller is not done, however long the pause ("my account number is …").
_CONTINUES = frozenset(
    """a an the and or but so because if of to for with my your our is are was am be
    from in on at by as than then that which who um uh er hmm like please""".split()
)


def sounds_complete(text: str) -> bool:
    """The early transcript reads as a finished utterance: Whisper closed it with . ? or !, and it
    does not stop on a word that needs more (or trail off with "...")."""
    t = text.strip()
    if not t or t.endswith(("...", "…", ",", "-")) or t[-1] not in ".?!":
        return False
    words = re.findall(r"[\w']+", t.lower())
    return bool(words) and words[-1] not in _CONTINUES


def _words(text: str) -> set[str]:
    """Lower-cased words, punctuation and symbols dropped (vowel signs of Indian scripts kept)."""
    return set("".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text.lower()).split())


def asks_to_stop(text: str, v: VoiceSettings, language: str) -> bool:
    """Short speech during an answer interrupts only when a word of it is one of
    `voice.interrupt_words` (the session's language and English)."""
    words = v.interrupt_words.get(language, []) + v.interrupt_words.get("en-IN", [])
    return bool(_words(text) & {w for phrase in words for w in _words(phrase)})


class VoiceCall:
    def __init__(
        self,
        ws: CallSocket,
        settings: Settings,
        session: CallState,
        start: SessionStart,
        start_turn: StartTurn,
        settle: Settle,
        transcribe: Transcribe,
        closing: asyncio.Event | None = None,
        goodbye: SessionClosing | None = None,
        charge: Charge | None = None,
        partial: Partial | None = None,
        listener: Listener | None = None,
        played: Callable[[str], set[int]] | None = None,
        drain: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.ws, self.s, self.v = ws, settings, settings.voice
        self.session = session
        self.format: AudioFormat = start.audio
        self._start_turn, self._settle, self._transcribe, self._charge = start_turn, settle, transcribe, charge
        self._partial = partial
        self._played = played  # a phone line's record of the sentences it played (their marks)
        self._drain = drain  # reads a phone line's last marks, sent before it dropped
        # A realtime recogniser: each utterance is streamed to it while spoken (word-level
        # partials; the final needs no upload). `_streamed`: samples of the utterance sent so far.
        self._listener = listener
        self._stream: SpeechStream | None = None
        self._streamed = 0
        self._failed_calls: list[ProviderCall] = []  # a failed stream's call record, for the turn's costs
        self.vad = Endpointer(SileroVad(16000), settings.vad, max_seconds=settings.audio.max_seconds)
        self._vad_batcher = VadBatcher.for_running_loop()  # every call on this loop shares the model's runs
        self.playing: _Playing | None = None
        self.early: _Early | None = None
        self._end_early: int | None = None  # speech_frames of an utterance its words say is over
        # The open utterance's turn id (its partials, early and final transcripts all carry it),
        # and where its last partial transcript was taken.
        self._utterance_id: str | None = None
        self._partial_frames = 0
        self._partial_task: asyncio.Task[None] | None = None
        self._partial_text = ""
        self.received_seconds = 0.0
        self.opened = time.monotonic()
        self.budget = CallBudget(self.v, self.opened)
        self._too_short = f"audio frames must be at least {self.v.min_frame_ms:g} ms"
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Set when the server shuts down: the call ends after the answer playing, with `goodbye`.
        self.closing, self.goodbye = closing, goodbye

    # sending ------------------------------------------------------------------------------------
    async def send(self, event: BaseModel) -> None:
        async with self._send_lock:
            await self.ws.send_text(event.model_dump_json())

    async def error(self, code: str, message: str, status: int = 400) -> None:
        """A message refused: counted (the call ends past `voice.max_bad_messages`), then answered."""
        self.budget.malformed()
        await self.send(ErrorEvent(turn_id="", code=code, message=message, status=status))

    def end(self, code: int, reason: str) -> None:
        """Close the call from outside (its API key was revoked): the loop then ends as on a hang-up."""
        task = asyncio.ensure_future(self.ws.close(code, reason))
        self._tasks.add(task)

    # the loop -----------------------------------------------------------------------------------
    async def run(self) -> None:
        if self.closing is not None:
            watcher = asyncio.create_task(self._close_when_draining())
            self._tasks.add(watcher)
        try:
            while True:
                remaining = self.v.max_session_s - (time.monotonic() - self.opened)
                if remaining <= 0:
                    await self.ws.close(CLOSE_SESSION_TOO_LONG, "maximum session length reached")
                    return
                try:
                    msg = await asyncio.wait_for(self.ws.receive(), timeout=min(self.v.idle_timeout_s, remaining))
                except TimeoutError:
                    if time.monotonic() - self.opened >= self.v.max_session_s:
                        continue
                    await self.ws.close(CLOSE_IDLE, "idle timeout")
                    return
                if msg["type"] == "websocket.disconnect":
                    return
                self.budget.message()
                if msg.get("bytes") is not None:
                    await self._audio(msg["bytes"])
                elif msg.get("text") is not None:
                    if await self._text(msg["text"]) is False:
                        return
        except OverBudget as exc:
            await self.ws.close(CLOSE_TOO_MANY_SESSIONS, str(exc))
            return
        except WebSocketDisconnect:
            return
        finally:
            self._drop_early()
            self._drop_partial()
            try:
                # The server may cancel this call as the line drops: what was heard is recorded all the same.
                await uncancelled(self._ended())
            finally:
                for t in list(self._tasks):
                    t.cancel()

    async def _ended(self) -> None:
        try:
            if self._drain is not None:
                await self._drain()
            if self._stream is not None:
                await self._stream.close()
            await self._cancel(reason="client", notify=False)
        except Exception:  # noqa: BLE001 - e.g. the database away: the turn's record stands as cut off
            log.exception("the call's last answer could not be settled")

    async def _close_when_draining(self) -> None:
        """Shutdown: finish the answer playing (within `voice.drain_s`), tell the caller how to
        resume, and close with 1012, so nothing the caller heard is cut or lost."""
        if self.closing is None:
            return
        await self.closing.wait()
        deadline = time.monotonic() + self.v.drain_s
        while self._answer_playing() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.goodbye is not None:
            await self.send(self.goodbye)
        await self.ws.close(CLOSE_SERVICE_RESTART, "server restarting: resume this session on a new connection")

    async def _text(self, raw: str) -> bool | None:
        if len(raw.encode()) > self.v.max_text_bytes:
            await self.ws.close(CLOSE_TOO_BIG, "text message too big")
            return False
        try:
            message = client_message.validate_python(json.loads(raw))
        except json.JSONDecodeError:
            await self.error("invalid_json", "text messages must be JSON objects")
            return None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])[:100]  # the client's own keys: any length
            await self.error("invalid_message", f"{where}: {str(first['msg'])[:200]}")
            return None
        if isinstance(message, Ping):
            await self.send(Pong())
        elif isinstance(message, SessionStart):
            await self.error("already_started", "session.start was already received")
        elif isinstance(message, SessionUpdate):
            try:
                if message.language:
                    check_language(message.language, self.s.languages)
            except InputError as exc:
                await self.error(exc.code, exc.message)
                return None
            self.session = self.session.model_copy(update=message.model_dump(exclude={"type"}, exclude_none=True))
        elif isinstance(message, ResponseCancel):
            await self._cancel(reason="client")
        elif isinstance(message, TextInput):
            await self._cancel(reason="barge_in")
            self._begin_turn(TurnRequest(turn_id=uuid.uuid4().hex, text=message.text, **self._turn_fields()))
        return None

    # audio in -----------------------------------------------------------------------------------
    def _decode(self, data: bytes) -> np.ndarray | None:
        if self.format.encoding == "mulaw":
            data = audioop.ulaw2lin(data, 2)
        elif len(data) % 2:
            return None
        samples = pcm16_to_float(data)
        if self.format.sample_rate != 16000:
            import soxr

            samples = soxr.resample(samples, self.format.sample_rate, 16000).astype(np.float32)
        return samples

    async def _audio(self, data: bytes) -> None:
        if len(data) > self.v.max_binary_bytes:
            await self.error("frame_too_big", f"audio frames must be at most {self.v.max_binary_bytes} bytes")
            return
        samples = self._decode(data)
        if samples is None:
            await self.error("bad_frame", "PCM16 frames must have an even number of bytes")
            return
        if not self.budget.audio(len(samples) / 16000):  # raises once the call runs ahead of real time
            await self.send(ErrorEvent(turn_id="", code="frame_too_short", message=self._too_short, status=400))
            return
        self.received_seconds += len(samples) / 16000
        events = await self.vad.feed_batched(samples, self._vad_batcher)
        if self._end_early is not None:
            if self.vad.in_speech and self.vad.speech_frames == self._end_early and self.vad.silence_ms > 0:
                ended = self.vad.end_now()  # the words are done: no need to wait out min_silence_ms
                if ended is not None:
                    events.append(ended)
            self._end_early = None
        for event in events:
            if isinstance(event, SpeechStarted):
                self._utterance_id, self._partial_frames, self._partial_text = (
                    uuid.uuid4().hex,
                    self.vad.speech_frames,
                    "",
                )
                self._open_stream()
                await self.send(VadEvent(type="vad.speech_start", at=round(event.at, 3)))
            elif isinstance(event, SpeechEnded):
                await self.send(VadEvent(type="vad.speech_end", at=round(event.at, 3)))
                await self._utterance(event)
        if self._stream is not None and self.vad.in_speech:
            more = self.vad.utterance_from(self._streamed)
            self._streamed += len(more)
            self._stream.send(more)
        if self.early is not None and self.vad.in_speech and self.vad.speech_frames != self.early.speech_frames:
            self._drop_early()  # the caller went on: stop transcribing speech that was not over
        self._maybe_start_early_asr()
        self._maybe_start_partial()
        if self.vad.in_speech and self._answer_playing() and self.vad.voiced_ms >= self.v.barge_in_min_ms:
            await self._cancel(reason="barge_in")

    def _answer_playing(self) -> bool:
        p = self.playing
        return p is not None and (not p.done or time.monotonic() < p.playing_until())

    def _maybe_start_early_asr(self) -> None:
        """After `early_asr_ms` of silence, transcribe the utterance so far while endpointing
        waits for `vad.min_silence_ms`; speech that resumes makes it stale (discarded). Not with a
        realtime recogniser: it has heard the utterance already, and finalises it at the end."""
        if (
            not self.v.early_asr_ms
            or not self.vad.in_speech
            or self.vad.silence_ms < self.v.early_asr_ms
            or self._stream is not None
        ):
            return
        frames = self.vad.speech_frames
        if self.early is not None and self.early.speech_frames == frames:
            return  # already transcribing exactly this speech
        self._drop_early()
        self._drop_partial()  # the early transcript supersedes it (and needs the ASR now)
        audio = self.vad.utterance_so_far()
        if len(audio) / 16000 < self.s.audio.min_seconds:
            return
        early = _Early(frames, self._utterance_id or uuid.uuid4().hex)
        early.task = asyncio.create_task(self._early_asr(early, Audio(audio, 16000)))
        self.early = early

    async def _early_asr(self, early: _Early, audio: Audio) -> tuple[Transcript, list[ProviderCall]]:
        result = await self._transcribe(audio, self._asr_language())
        if not early.stale and not self._answer_playing():  # still valid: show it as a partial
            await self.send(TranscriptEvent(turn_id=early.turn_id, transcript=result[0], final=False))
            if self.v.early_end and sounds_complete(result[0].text):
                self._end_early = early.speech_frames  # the next frame ends the utterance
        return result

    def _maybe_start_partial(self) -> None:
        """While the caller speaks, each `partial_interval_ms` of new speech, the utterance so far
        is offered to the ASR for a partial transcript. One at a time; only an idle local engine
        makes one, and a real decode preempts it after its encoder pass."""
        if (
            self._partial is None
            or self._stream is not None
            or not self.v.partial_interval_ms
            or not self.vad.in_speech
            or self.vad.silence_ms > 0
            or self.early is not None
            or self._answer_playing()
            or (self._partial_task is not None and not self._partial_task.done())
        ):
            return
        if (self.vad.speech_frames - self._partial_frames) * self.vad.frame_ms < self.v.partial_interval_ms:
            return
        self._partial_frames = self.vad.speech_frames
        task = asyncio.create_task(self._partial_asr(self._utterance_id, Audio(self.vad.utterance_so_far(), 16000)))
        self._partial_task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _partial_asr(self, utterance_id: str | None, audio: Audio) -> None:
        if self._partial is None:
            return
        try:
            result = await self._partial(audio, self._asr_language())
        except Exception:  # noqa: BLE001 - a partial is a courtesy: the final transcript still comes
            log.debug("partial ASR failed", exc_info=True)
            result = None
        if result is None:
            metrics.inc("samvad_partial_asr_total", result="skipped")
            return
        text = result.text.strip()
        if (
            utterance_id != self._utterance_id
            or not self.vad.in_speech
            or self.early is not None
            or not text
            or text == self._partial_text
        ):
            metrics.inc("samvad_partial_asr_total", result="stale")
            return
        self._partial_text = text
        metrics.inc("samvad_partial_asr_total", result="sent")
        await self.send(TranscriptEvent(turn_id=utterance_id, transcript=result, final=False))

    def _open_stream(self) -> None:
        """A new utterance: stream it to the realtime recogniser, if there is one and its circuit
        is closed. Its partials are shown while this utterance is still the one spoken."""
        if self._listener is None:
            return
        if self._stream is not None:  # an utterance that never ended (cannot happen, but never leak a socket)
            stale = asyncio.ensure_future(self._stream.close())
            self._tasks.add(stale)
            stale.add_done_callback(self._tasks.discard)
        utterance_id = self._utterance_id

        async def on_partial(transcript: Transcript) -> None:
            if utterance_id != self._utterance_id or self._answer_playing() or transcript.text == self._partial_text:
                return
            self._partial_text = transcript.text
            metrics.inc("samvad_partial_asr_total", result="sent")
            with contextlib.suppress(Exception):  # the caller hung up: the stream is closed next
                await self.send(TranscriptEvent(turn_id=utterance_id, transcript=transcript, final=False))

        self._stream, self._streamed = self._listener.open(self._asr_language(), on_partial), 0

    async def _finish_stream(self, ended: SpeechEnded) -> tuple[Transcript, list[ProviderCall]] | None:
        """The realtime recogniser's final transcript of this utterance; None if it failed (the
        utterance then goes to the REST recogniser, as without one)."""
        stream, self._stream = self._stream, None
        if stream is None or self._listener is None:
            return None
        if len(ended.audio) > self._streamed:
            stream.send(ended.audio[self._streamed :])
        calls: list[ProviderCall] = []
        try:
            transcript = await stream.finish(calls)
        except Exception as exc:  # noqa: BLE001 - any failure: the REST recogniser takes the utterance
            log.warning("realtime ASR failed (%s); transcribing the utterance instead", exc)
            metrics.inc("samvad_realtime_asr_total", result="failed")
            self._listener.failed(exc)
            await stream.close()
            self._failed_calls = calls
            return None
        metrics.inc("samvad_realtime_asr_total", result="ok")
        self._listener.succeeded()
        return transcript, calls

    def _drop_partial(self) -> None:
        if self._partial_task is not None and not self._partial_task.done():
            self._partial_task.cancel()
        self._partial_task = None

    def _drop_early(self) -> None:
        if self.early is not None:
            self.early.stale = True
            if self.early.task is not None:
                self.early.task.cancel()
            self.early = None
            metrics.inc("samvad_early_asr_total", result="discarded")

    async def _recognised(self, ended: SpeechEnded) -> tuple[Transcript, list[ProviderCall]] | None:
        """The early transcript of exactly this utterance, if there is one and it worked."""
        if self.early is None:
            return None
        if self.early.speech_frames != ended.speech_frames:
            self._drop_early()
            return None
        early, self.early = self.early, None
        if early.task is None:
            return None
        try:
            result = await early.task
            metrics.inc("samvad_early_asr_total", result="used")
            return result
        except Exception:  # noqa: BLE001 - fall back to ASR inside the turn
            log.warning("early ASR failed; transcribing in the turn", exc_info=True)
            return None

    async def _utterance(self, ended: SpeechEnded) -> None:
        voiced = self.vad.voiced_ms
        turn_id = self.early.turn_id if self.early is not None else (self._utterance_id or uuid.uuid4().hex)
        self._utterance_id = None
        self._drop_partial()
        early = await self._finish_stream(ended) if self._stream is not None else await self._recognised(ended)
        if self._answer_playing() and voiced < self.v.barge_in_min_ms:
            # Short speech during an answer: a blip, or a backchannel ("haan", "ok") unless the
            # transcript asks to stop ("stop", "no", "ruko").
            text, heard = "", True
            if voiced >= self.v.min_interrupt_ms:
                try:
                    early = early or await self._transcribe(Audio(ended.audio, 16000), self._asr_language())
                    text = early[0].text
                except SamvadError:  # not transcribed here (the key's budget): the turn's own ASR hears it
                    early, heard = None, False
            if heard and not asks_to_stop(text, self.v, self.session.language):
                await self.send(Backchannel(text=text))
                return
        await self._cancel(reason="barge_in")
        fields = self._turn_fields()
        if early is not None:
            request = TurnRequest(turn_id=turn_id, transcript=early[0], transcript_calls=early[1], **fields)
        else:
            request = TurnRequest(
                turn_id=turn_id,
                audio=wav_bytes(float_to_pcm16(ended.audio), 16000),
                transcript_calls=self._failed_calls,
                **fields,
            )
        self._failed_calls = []
        self._begin_turn(request, speech_ended_at=time.monotonic() - ended.silence_ms / 1000)

    def _asr_language(self) -> str | None:
        """The language the ASR is told: none when the session detects it per utterance."""
        language = self.session.language
        return None if language == AUTO else language

    def _turn_fields(self) -> dict[str, Any]:
        return self.session.model_dump() | {"channel": "voice"}

    # turns out ----------------------------------------------------------------------------------
    def _begin_turn(self, request: TurnRequest, speech_ended_at: float | None = None) -> None:
        if self.closing is not None and self.closing.is_set():
            return  # shutting down: the caller resumes on another replica and asks there
        playing = _Playing(turn_id=request.turn_id, speech_ended_at=speech_ended_at)
        playing.task = asyncio.create_task(self._play(request, playing))
        self.playing = playing
        self._tasks.add(playing.task)
        playing.task.add_done_callback(self._tasks.discard)

    async def _play(self, request: TurnRequest, p: _Playing) -> None:
        started = time.perf_counter()
        if self._charge is not None:
            try:
                await self._charge()  # every turn counts against the key's rate limit
            except SamvadError as exc:
                p.done = True
                await self.send(
                    ErrorEvent(turn_id=request.turn_id, code=exc.code, message=exc.message, status=exc.status)
                )
                return
        try:
            async for event in self._start_turn(request):
                if isinstance(event, ResponseDeltaEvent):
                    p.sentences[event.index] = event.text
                    p.complete.update(i for i in p.sentences if i < event.index)
                elif isinstance(event, AudioEvent):
                    await self._pace(p, event)
                elif isinstance(event, TurnDoneEvent):
                    p.complete.update(p.sentences)
                    # Every chunk was sent: the answer is recorded as heard before turn.done says
                    # so (a client reading the conversation then finds it); with the database
                    # away, turn.done goes out all the same and the record is tried again later.
                    if event.outcome == "complete":
                        await self._record_heard(p, p.heard_text(), True, later=True)
                    p.done, p.outcome = True, event.outcome
                    metrics.count_turn(event, "voice", (time.perf_counter() - started) * 1000)
                await self.send(event)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one failed turn must not end the call
            log.exception("turn %s failed", request.turn_id)
            if self.playing is p and not p.done:  # e.g. its host died: keep what was heard, as interrupted
                p.broken = True
                try:
                    await self._record_heard(p, p.heard_text(self._line_played(p)), False)
                except Exception:  # noqa: BLE001
                    log.exception("turn %s could not be marked interrupted", request.turn_id)
            p.done = True
            # The reason stays in the log (with the turn id): engine internals are not the caller's.
            failed = ErrorEvent(
                turn_id=request.turn_id,
                code="turn_failed",
                message="the turn failed; ask again (quote the turn id when reporting it)",
                status=502,
            )
            with contextlib.suppress(Exception):  # the line itself may be what failed: its hang-up follows
                await self.send(failed)

    async def _pace(self, p: _Playing, event: AudioEvent) -> None:
        """Send audio no further than `playback_lead_s` ahead of where playback is now, so that
        what was sent is close to what was heard when the caller interrupts."""
        now = time.monotonic()
        if p.first_audio_at is None:
            p.first_audio_at = now
            if p.speech_ended_at is not None:
                metrics.observe("samvad_first_audio_ms", (now - p.speech_ended_at) * 1000, measure="speech_end")
        ahead = p.sent_seconds - (now - p.first_audio_at) - self.v.playback_lead_s
        if ahead > 0:
            await asyncio.sleep(ahead)
        p.sent_seconds += len(event.audio) / 2 / event.sample_rate

    def _line_played(self, p: _Playing) -> set[int] | None:
        """The sentences of `p` a phone line says it played (its marks came back); None on a
        line that does not say (a browser: what was sent counts as heard)."""
        return self._played(p.turn_id) if self._played is not None else None

    async def _record_heard(self, p: _Playing, heard: str, complete: bool, *, later: bool = False) -> None:
        """Tell the conversation what the caller heard of `p`. With `later`, a failure (the
        database away) is logged and the call tries again when the answer is over."""
        try:
            await self._settle(p.turn_id, heard, complete)
        except Exception:
            if not later:
                raise
            log.warning("turn %s: what was heard is not recorded yet", p.turn_id, exc_info=True)
            return
        p.settled = (heard, complete)

    async def _cancel(self, *, reason: str, notify: bool = True) -> None:
        p = self.playing
        if p is None or p.task is None:
            return
        self.playing = None
        if not p.task.done():
            if not p.done:
                p.task.cancel()
            # (After its turn.done, recorded, the task only sends that on: it finishes.)
            await asyncio.gather(p.task, return_exceptions=True)
        played = self._line_played(p)
        heard = p.heard_text(played)
        if p.done and not p.broken and (reason == "client" or time.monotonic() >= p.playing_until()):
            # Finished: every chunk was sent (turn.done), and it played out or the client went
            # away after receiving it. A later close never rewrites a finished answer, unless
            # the line says some of it never played (a phone call hung up while it was buffered).
            if played is None or p.complete <= played:
                if p.outcome == "complete" and p.settled is None:  # its record failed at turn.done
                    await self._record_heard(p, p.heard_text(), True)
                return
        if p.broken and p.settled == (heard, False):
            return  # its failure recorded what was heard, and the line has played nothing since
        await self._record_heard(p, heard, False)
        if not p.done:  # cut off before its turn.done (which counts a finished turn): counted here
            metrics.inc("samvad_turns_total", outcome="interrupted", channel="voice")
        if notify:
            await self.send(ResponseCancelled(turn_id=p.turn_id, reason=reason, heard_text=heard))
