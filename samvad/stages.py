"""Stage services: the plain-Python classes that the Ray Serve deployments wrap.

Each builds its engine from settings and answers one call with its result plus the
`ProviderCall` records of that call, so usage and cost travel back to the session across a
process boundary. Streams yield their chunks and end with one `StageReport`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from samvad.audio import Audio
from samvad.contracts import ProviderCall, Transcript
from samvad.providers import registry
from samvad.providers.base import AudioChunk, ChatRequest, SpeechRequest, TranslationRequest, TranslationResult
from samvad.settings import Settings
from samvad.storage.cache import Cache, cache_key


class StageReport(BaseModel):
    """Last item of a stage stream: the calls it made and whether the cache answered."""

    calls: list[ProviderCall]
    cache_hit: bool = False


def _settings(settings: Settings | dict[str, Any]) -> Settings:
    return settings if isinstance(settings, Settings) else Settings.model_validate(settings)


class AsrStage:
    def __init__(self, settings: Settings | dict[str, Any]) -> None:
        self.engine = registry.build_stt(_settings(settings))

    async def transcribe(self, audio: Audio, language: str | None) -> tuple[Transcript, list[ProviderCall]]:
        calls: list[ProviderCall] = []
        return await self.engine.transcribe(audio, language, calls), calls


class LlmStage:
    def __init__(self, settings: Settings | dict[str, Any]) -> None:
        self.engine = registry.build_llm(_settings(settings))

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | StageReport]:
        calls: list[ProviderCall] = []
        async for delta in self.engine.stream(request, calls):
            yield delta
        yield StageReport(calls=calls)


class TranslationStage:
    def __init__(self, settings: Settings | dict[str, Any]) -> None:
        self.engine = registry.build_translator(_settings(settings))

    async def translate(self, request: TranslationRequest) -> tuple[TranslationResult, list[ProviderCall]]:
        calls: list[ProviderCall] = []
        return await self.engine.translate(request, calls), calls


class TtsStage:
    """Speech synthesis with a Redis cache of whole utterances (key: provider, model, voice,
    language, text). A hit replays the audio in chunks; a miss is cached once complete."""

    def __init__(self, settings: Settings | dict[str, Any]) -> None:
        s = _settings(settings)
        self.engine = registry.build_tts(s)
        self.cache = Cache(s.redis_url, s.service.cache_ttl_seconds) if s.redis_url else None
        self._chunk_bytes = 4096

    async def stream(self, request: SpeechRequest) -> AsyncIterator[AudioChunk | StageReport]:
        calls: list[ProviderCall] = []
        voice = request.voice or ""
        key = cache_key("tts", self.engine.name, self.engine.model, voice, request.language, request.text)
        if self.cache is not None:
            cached = await self.cache.get(key)
            if cached is not None and len(cached) > 4:
                rate = int.from_bytes(cached[:4], "little")
                for i in range(4, len(cached), self._chunk_bytes):
                    yield AudioChunk(pcm16=cached[i : i + self._chunk_bytes], sample_rate=rate)
                yield StageReport(calls=[], cache_hit=True)
                return
        pcm, rate = [], 0
        async for chunk in self.engine.stream(request, calls):
            pcm.append(chunk.pcm16)
            rate = chunk.sample_rate
            yield chunk
        if self.cache is not None and pcm:
            await self.cache.set("tts", key, rate.to_bytes(4, "little") + b"".join(pcm))
        yield StageReport(calls=calls)

