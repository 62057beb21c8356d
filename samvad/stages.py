"""Stage services: the plain-Python classes that the Ray Serve deployments wrap.

Each is given its engine (`parts(settings)` builds it as configured: the deployment's replica
calls it; a test passes its own) and answers one call with its result plus the
`ProviderCall` records of that call, so usage and cost travel back to the session across a
process boundary. Streams yield their chunks and end with one `StageReport`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from samvad.audio import Audio
from samvad.contracts import ProviderCall, Transcript
from samvad.errors import SamvadError
from samvad.providers import registry
from samvad.providers.base import (
    AudioChunk,
    Chat,
    ChatRequest,
    LanguageGuess,
    LanguageIdentifier,
    Recognizer,
    Speech,
    SpeechRequest,
    Translation,
    TranslationRequest,
    TranslationResult,
)
from samvad.settings import Settings
from samvad.storage.cache import Cache


class StageReport(BaseModel):
    """Last item of a stage stream: the calls it made and whether the cache answered."""

    calls: list[ProviderCall]
    cache_hit: bool = False


def _cache(s: Settings) -> Cache | None:
    url = s.cache_redis_url or s.redis_url
    return Cache(url, s.service.cache_ttl_seconds) if url else None


class AsrStage:
    def __init__(self, engine: Recognizer) -> None:
        self.engine = engine

    @staticmethod
    def parts(s: Settings) -> dict[str, Any]:
        """The constructor's arguments as configured (the deployment's replica builds them)."""
        return {"engine": registry.build_stt(s, _cache(s))}

    async def transcribe(self, audio: Audio, language: str | None) -> tuple[Transcript, list[ProviderCall]]:
        calls: list[ProviderCall] = []
        return await self.engine.transcribe(audio, language, calls), calls

    async def partial(self, audio: Audio, language: str | None) -> Transcript | None:
        """Speech still going on, transcribed only by an idle local engine (no cost, no record)."""
        return await self.engine.partial(audio, language)

    def offers_partials(self) -> bool:
        return self.engine.offers_partials


class LlmStage:
    def __init__(self, engine: Chat) -> None:
        self.engine = engine

    @staticmethod
    def parts(s: Settings) -> dict[str, Any]:
        # Warm before the first call: a replica's first caller waited ~1.4 s for the answer
        # sentences it needed while the background warm-up competed for the CPU.
        return {"engine": registry.build_llm(s, warm_now=True)}

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | StageReport]:
        calls: list[ProviderCall] = []
        async for delta in self.engine.stream(request, calls):
            yield delta
        yield StageReport(calls=calls)

    async def complete(self, request: ChatRequest) -> tuple[list[str], StageReport]:
        """The whole answer in one call: for a turn answered all at once (REST), one unary hop
        is cheaper than a stream."""
        calls: list[ProviderCall] = []
        deltas = [delta async for delta in self.engine.stream(request, calls)]
        return deltas, StageReport(calls=calls)


class TranslationStage:
    def __init__(self, engine: Translation, language_id: LanguageIdentifier | None = None) -> None:
        self.engine = engine
        # Language identification of typed text is a language service too: it lives here rather
        # than in a deployment of its own (one HTTP call, when configured).
        self.language_id = language_id

    @staticmethod
    def parts(s: Settings) -> dict[str, Any]:
        return {"engine": registry.build_translator(s, _cache(s)), "language_id": registry.build_language_id(s)}

    async def translate(self, request: TranslationRequest) -> tuple[TranslationResult, list[ProviderCall]]:
        calls: list[ProviderCall] = []
        return await self.engine.translate(request, calls), calls

    async def identify(self, text: str) -> tuple[LanguageGuess | None, list[ProviderCall]]:
        """The language of typed text, or None with the failed call when the identifier failed
        (the turn then keeps its offline detection)."""
        calls: list[ProviderCall] = []
        if self.language_id is None:
            return None, calls
        try:
            return await self.language_id.identify(text, calls), calls
        except SamvadError:
            return None, calls


class TtsStage:
    """Speech synthesis through the configured chain (cached per provider in Redis)."""

    def __init__(self, engine: Speech) -> None:
        self.engine = engine

    @staticmethod
    def parts(s: Settings) -> dict[str, Any]:
        return {"engine": registry.build_tts(s, _cache(s))}

    async def stream(self, request: SpeechRequest) -> AsyncIterator[AudioChunk | StageReport]:
        calls: list[ProviderCall] = []
        async for chunk in self.engine.stream(request, calls):
            yield chunk
        yield _tts_report(calls)

    async def synthesize(self, request: SpeechRequest) -> tuple[list[AudioChunk], StageReport]:
        """All of a sentence's audio in one call (REST turns: nothing is played before the end)."""
        calls: list[ProviderCall] = []
        chunks = [chunk async for chunk in self.engine.stream(request, calls)]
        return chunks, _tts_report(calls)


def _tts_report(calls: list[ProviderCall]) -> StageReport:
    return StageReport(calls=calls, cache_hit=bool(calls) and all(c.cache_hit for c in calls if c.outcome == "ok"))
