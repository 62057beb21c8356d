"""Redis caching around one provider: TTS audio and translations keyed by provider, model,
voice, language, mode and text; transcripts by a hash of the audio. A cache hit appears in the
call log as a `ProviderCall` with `cache_hit=True` and no cost. Cache failures are misses."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from samvad.audio import Audio
from samvad.contracts import ProviderCall, Transcript
from samvad.providers.base import (
    AudioChunk,
    CallLog,
    Engine,
    Recognizer,
    Speech,
    SpeechRequest,
    Translation,
    TranslationRequest,
    TranslationResult,
)
from samvad.storage.cache import Cache, cache_key, seal, sealed_key, unseal

_CHUNK = 4096  # bytes per replayed audio chunk


E = TypeVar("E", bound=Engine)


class _Cached(Generic[E]):
    """One engine (any `Engine`) behind the cache; a subclass per stage interface says what is kept."""

    def __init__(self, inner: E, cache: Cache) -> None:
        self.inner = inner
        self.cache = cache
        self.stage, self.name, self.model, self.capabilities = inner.stage, inner.name, inner.model, inner.capabilities

    def _hit(self, calls: CallLog, started: float) -> None:
        ms = (time.perf_counter() - started) * 1000
        calls.append(
            ProviderCall(
                stage=self.stage, provider=self.name, model=self.model, cache_hit=True, ttfb_ms=ms, latency_ms=ms
            )
        )


class CachedTTS(_Cached[Speech]):
    async def stream(self, request: SpeechRequest, calls: CallLog) -> AsyncIterator[AudioChunk]:
        started = time.perf_counter()
        # Per tenant: a hit (X-Cache on /tts, or its speed) must not tell one tenant another's text.
        key = cache_key(
            "tts", request.tenant or "", self.name, self.model, request.voice or "", request.language, request.text
        )
        cached = await self.cache.get(key)
        if cached is not None and len(cached) > 4:
            rate = int.from_bytes(cached[:4], "little")
            for i in range(4, len(cached), _CHUNK):
                yield AudioChunk(pcm16=cached[i : i + _CHUNK], sample_rate=rate)
            self._hit(calls, started)
            return
        pcm, rate = [], 0
        async for chunk in self.inner.stream(request, calls):
            pcm.append(chunk.pcm16)
            rate = chunk.sample_rate
            yield chunk
        if pcm:  # only whole utterances are cached (a cancelled stream never gets here)
            await self.cache.set("tts", key, rate.to_bytes(4, "little") + b"".join(pcm))


class CachedTranslator(_Cached[Translation]):
    async def translate(self, request: TranslationRequest, calls: CallLog) -> TranslationResult:
        started = time.perf_counter()
        # Per tenant, as speech: a hit's `cache_hit` (or its speed) must not tell one tenant what
        # another's answers said.
        key = cache_key(
            "translation",
            request.tenant or "",
            self.name,
            self.model,
            request.source_language,
            request.target_language,
            request.mode,
            request.output_script,
            request.text,
        )
        if (cached := await self.cache.get(key)) is not None:
            self._hit(calls, started)
            return TranslationResult.model_validate_json(cached)
        result = await self.inner.translate(request, calls)
        if not result.flags:  # a degraded answer is not worth keeping
            await self.cache.set("translation", key, result.model_dump_json().encode())
        return result


class CachedSTT(_Cached[Recognizer]):
    async def transcribe(self, audio: Audio, language: str | None, calls: CallLog) -> Transcript:
        started = time.perf_counter()
        # Transcripts hold what callers said (card and phone numbers): stored sealed with a key
        # derived from the audio itself, so Redis never holds one readable.
        key, secret = sealed_key(
            "asr", self.name, self.model, language, str(audio.sample_rate), audio.samples.tobytes()
        )
        if (cached := await self.cache.get(key)) is not None and (plain := unseal(secret, cached)) is not None:
            self._hit(calls, started)
            return Transcript.model_validate(json.loads(plain))
        result = await self.inner.transcribe(audio, language, calls)
        await self.cache.set("asr", key, seal(secret, result.model_dump_json().encode()))
        return result

    @property
    def offers_partials(self) -> bool:
        return self.inner.offers_partials

    async def partial(self, audio: Audio, language: str | None) -> Transcript | None:
        return await self.inner.partial(audio, language)  # never cached: the speech is still growing
