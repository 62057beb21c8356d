"""One small interface per stage. The base classes own the cross-cutting work (timing, usage
records, error translation); a provider only implements `_..._impl` (DESIGN.md §6.2).

Every public call takes a `CallLog` and appends one `ProviderCall` to it when the call ends,
whether it succeeded, failed or was cancelled, so the session can persist what every call cost.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pydantic import BaseModel

from samvad.audio import Audio
from samvad.contracts import ChatMessage, Passage, ProviderCall, Stage, Transcript, Usage
from samvad.errors import InputError, ProviderError, SamvadError, public_message

CallLog = list[ProviderCall]


@dataclass(frozen=True)
class Capabilities:
    languages: frozenset[str] | None = None  # None: any language


@dataclass
class CallRecord:
    """Mutable view of the call in flight; the impl fills in `usage` and may mark first output."""

    usage: Usage = field(default_factory=Usage)
    retries: int = 0  # retried attempts inside this call (HTTP providers)
    started: float = field(default_factory=time.perf_counter)
    first_output: float | None = None
    truncated: bool = False  # chat: the answer was cut at the token limit

    def mark_first_output(self) -> None:
        if self.first_output is None:
            self.first_output = time.perf_counter()


class Provider(abc.ABC):
    stage: Stage
    name: str
    capabilities = Capabilities()

    def __init__(self, model: str) -> None:
        self.model = model

    @contextmanager
    def _track(self, calls: CallLog) -> Iterator[CallRecord]:
        rec = CallRecord()
        outcome, error, detail = "ok", None, None
        try:
            yield rec
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "cancelled"
            raise
        except SamvadError as exc:
            outcome, error, detail = "error", f"{exc.code}: {public_message(exc)}", f"{exc.code}: {exc.message}"[:500]
            raise
        except Exception as exc:
            # Engine errors become one typed error; the cause stays chained for the logs.
            failed = ProviderError(
                f"{self.name} {self.stage} failed ({type(exc).__name__})", provider=self.name, stage=self.stage
            )
            outcome, error, detail = (
                "error",
                f"{failed.code}: {public_message(failed)}",
                f"{type(exc).__name__}: {exc}"[:500],
            )
            raise failed from exc
        finally:
            end = time.perf_counter()
            calls.append(
                ProviderCall(
                    stage=self.stage,
                    provider=self.name,
                    model=self.model,
                    usage=rec.usage,
                    retries=rec.retries,
                    ttfb_ms=None if rec.first_output is None else (rec.first_output - rec.started) * 1000,
                    latency_ms=(end - rec.started) * 1000,
                    outcome=outcome,
                    error=error,
                    error_detail=detail,
                    truncated=rec.truncated,
                )
            )


class SpeechToText(Provider):
    stage: Stage = "asr"
    offers_partials = False  # `partial` can return a transcript (else it is always None)

    async def transcribe(self, audio: Audio, language: str | None, calls: CallLog) -> Transcript:
        with self._track(calls) as rec:
            rec.usage = Usage(audio_seconds=audio.duration)
            result = await self._transcribe_impl(audio, language, rec)
            rec.mark_first_output()
            return result

    @abc.abstractmethod
    async def _transcribe_impl(self, audio: Audio, language: str | None, rec: CallRecord) -> Transcript: ...

    async def partial(self, audio: Audio, language: str | None) -> Transcript | None:
        """A transcript of speech still going on, shown to the caller while it speaks. Offered
        only where it costs nothing but idle CPU: None from an engine billed per call, or busy."""
        return None


OnPartial = Callable[[Transcript], Awaitable[None]]


class SpeechStream(abc.ABC):
    """One utterance streamed to a realtime recogniser while the caller speaks: audio goes in as
    it arrives, partial transcripts come out through the `on_partial` it was opened with, and
    the final transcript is ready moments after the end of speech (no second upload)."""

    @abc.abstractmethod
    def send(self, samples: np.ndarray) -> None:
        """More of the utterance (16 kHz mono float32). Never blocks: audio queues until sent."""

    @abc.abstractmethod
    async def finish(self, calls: CallLog) -> Transcript:
        """The caller stopped: the final transcript, with the call (and what it cost) in `calls`."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Abandon the utterance (the call ended or the speech was dropped)."""


class RealtimeSpeechToText(Provider):
    stage: Stage = "asr"

    @abc.abstractmethod
    def open(self, language: str | None, on_partial: OnPartial) -> SpeechStream:
        """A stream for one utterance; `language` None detects it. Connects in the background."""


class ChatRequest(BaseModel):
    """What a chat model needs for one answer: the conversation and the retrieved passages.

    Generative models render the passages into their prompt; the extractive engine reads them.
    """

    messages: list[ChatMessage]
    passages: list[Passage] = []

    @property
    def question(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        raise InputError("the conversation has no user message", code="text_empty")


class ChatModel(Provider):
    stage: Stage = "llm"

    async def stream(self, request: ChatRequest, calls: CallLog) -> AsyncIterator[str]:
        """Yield text deltas of the answer as the model produces them."""
        with self._track(calls) as rec:
            async for delta in self._stream_impl(request, rec):
                rec.mark_first_output()
                yield delta

    @abc.abstractmethod
    def _stream_impl(self, request: ChatRequest, rec: CallRecord) -> AsyncIterator[str]: ...


class TranslationRequest(BaseModel):
    text: str
    source_language: str
    target_language: str
    mode: str = "formal"
    output_script: str | None = None  # Sarvam: roman | fully-native | spoken-form-in-native
    tenant: str | None = None  # the API key's id: its cached translations are its own


class TranslationResult(BaseModel):
    text: str
    language_code: str  # the language `text` is actually in
    flags: list[str] = []


class Translator(Provider):
    stage: Stage = "translation"

    async def translate(self, request: TranslationRequest, calls: CallLog) -> TranslationResult:
        with self._track(calls) as rec:
            rec.usage = Usage(characters=len(request.text))
            result = await self._translate_impl(request, rec)
            rec.mark_first_output()
            return result

    @abc.abstractmethod
    async def _translate_impl(self, request: TranslationRequest, rec: CallRecord) -> TranslationResult: ...


class LanguageGuess(BaseModel):
    """What a text language identifier says: e.g. romanised Hindi is hi-IN in Latn."""

    language_code: str | None
    script_code: str | None


class LanguageIdentifier(Provider):
    """Typed text's language and script (a cloud service; offline, `samvad.language.detect_text`
    reads the script and common romanised Hindi words instead)."""

    stage: Stage = "language_id"

    async def identify(self, text: str, calls: CallLog) -> LanguageGuess:
        with self._track(calls) as rec:
            rec.usage = Usage(characters=len(text))
            result = await self._identify_impl(text, rec)
            rec.mark_first_output()
            return result

    @abc.abstractmethod
    async def _identify_impl(self, text: str, rec: CallRecord) -> LanguageGuess: ...


class SpeechRequest(BaseModel):
    text: str
    language: str
    voice: str | None = None
    tenant: str | None = None  # the API key it is for: caches are kept per tenant
    previous_text: str | None = None  # what was said just before, in the same answer (prosody)


class AudioChunk(BaseModel):
    pcm16: bytes  # mono little-endian
    sample_rate: int


class TextToSpeech(Provider):
    stage: Stage = "tts"

    async def stream(self, request: SpeechRequest, calls: CallLog) -> AsyncIterator[AudioChunk]:
        """Yield PCM16 chunks as they are synthesised."""
        with self._track(calls) as rec:
            rec.usage = Usage(characters=len(request.text))
            async for chunk in self._stream_impl(request, rec):
                rec.mark_first_output()
                yield chunk

    @abc.abstractmethod
    def _stream_impl(self, request: SpeechRequest, rec: CallRecord) -> AsyncIterator[AudioChunk]: ...


# What a stage's service calls of its engine: one provider above, a failover chain over several
# (fallback.py) or a provider behind the cache (cached.py), all alike.
class Engine(Protocol):
    @property
    def stage(self) -> Stage: ...
    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def capabilities(self) -> Capabilities: ...


class Recognizer(Engine, Protocol):
    @property
    def offers_partials(self) -> bool: ...
    async def transcribe(self, audio: Audio, language: str | None, calls: CallLog) -> Transcript: ...
    async def partial(self, audio: Audio, language: str | None) -> Transcript | None: ...


class Chat(Engine, Protocol):
    def stream(self, request: ChatRequest, calls: CallLog) -> AsyncIterator[str]: ...


class Translation(Engine, Protocol):
    async def translate(self, request: TranslationRequest, calls: CallLog) -> TranslationResult: ...


class Speech(Engine, Protocol):
    def stream(self, request: SpeechRequest, calls: CallLog) -> AsyncIterator[AudioChunk]: ...
