"""The cache adapter (samvad/providers/cached.py) over counting engines: a miss asks the engine
and keeps the result, a hit answers without it (recorded as a free `cache_hit` call), what is
kept is scoped (per tenant for speech, sealed for transcripts), and a cache that fails is a
miss, never an error."""

import numpy as np
import pytest

from samvad.audio import Audio
from samvad.contracts import Transcript
from samvad.providers.base import (
    AudioChunk,
    SpeechRequest,
    SpeechToText,
    TextToSpeech,
    TranslationRequest,
    TranslationResult,
    Translator,
)
from samvad.providers.cached import CachedSTT, CachedTranslator, CachedTTS
from samvad.storage.cache import Cache

pytestmark = pytest.mark.unit


class MemoryRedis:
    """The two calls the cache makes of redis.asyncio, kept in a dict."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def set(self, key: str, value: bytes, ex: int) -> None:
        self.data[key] = value


def _cache(redis: MemoryRedis | None = None) -> Cache:
    # Port 1 refuses at once: without a fake behind it, every call fails the way a down Redis does.
    cache = Cache("redis://127.0.0.1:1/0", {"tts": 60, "translation": 60, "asr": 60})
    if redis is not None:
        cache._redis = redis  # type: ignore[assignment]
    return cache


class CountingTTS(TextToSpeech):
    name = "counting"

    def __init__(self) -> None:
        super().__init__(model="m1")
        self.asked = 0

    async def _stream_impl(self, request, rec):
        self.asked += 1
        for part in (b"ab", b"cd"):
            yield AudioChunk(pcm16=part * 2, sample_rate=8000)


class CountingTranslator(Translator):
    name = "counting"

    def __init__(self, flags: list[str] | None = None) -> None:
        super().__init__(model="m1")
        self.asked, self.flags = 0, flags or []

    async def _translate_impl(self, request, rec):
        self.asked += 1
        return TranslationResult(text=f"[{request.text}]", language_code=request.target_language, flags=self.flags)


class CountingSTT(SpeechToText):
    name = "counting"
    offers_partials = True

    def __init__(self) -> None:
        super().__init__(model="m1")
        self.asked = self.partials = 0

    async def _transcribe_impl(self, audio, language, rec):
        self.asked += 1
        return Transcript(text="my card number is 4111", language_code=language or "en-IN", confidence=0.9)

    async def partial(self, audio, language):
        self.partials += 1
        return Transcript(text="my card", language_code="en-IN", confidence=0.5)


async def _speak(tts, text="namaste", tenant="t1", calls=None):
    request = SpeechRequest(text=text, language="hi-IN", tenant=tenant)
    return b"".join([c.pcm16 async for c in tts.stream(request, calls if calls is not None else [])])


async def test_speech_is_kept_whole_and_replayed_without_the_engine_per_tenant():
    redis, inner = MemoryRedis(), CountingTTS()
    tts = CachedTTS(inner, _cache(redis))
    first = await _speak(tts)
    calls = []
    again = await _speak(tts, calls=calls)
    assert again == first == b"ababcdcd" and inner.asked == 1
    assert [(c.provider, c.cache_hit, c.stage) for c in calls] == [("counting", True, "tts")]
    assert await _speak(tts, tenant="t2") == first and inner.asked == 2  # another tenant: its own entry
    assert await _speak(tts, text="dhanyavaad") and inner.asked == 3


async def test_a_degraded_translation_is_not_kept():
    request = TranslationRequest(text="hello", source_language="en-IN", target_language="hi-IN")
    good, flagged = CountingTranslator(), CountingTranslator(flags=["fallback_identity"])
    for inner, asked in ((good, 1), (flagged, 2)):
        cached = CachedTranslator(inner, _cache(MemoryRedis()))
        results = [await cached.translate(request, []) for _ in range(2)]
        assert results[0] == results[1] and results[0].text == "[hello]" and inner.asked == asked


async def test_translations_are_kept_per_tenant():
    """A hit (`cache_hit`, its speed) must not tell one tenant what another's answers said."""
    inner = CountingTranslator()
    cached = CachedTranslator(inner, _cache(MemoryRedis()))
    ask = {"text": "hello", "source_language": "en-IN", "target_language": "hi-IN"}
    calls: list = []
    await cached.translate(TranslationRequest(**ask, tenant="t1"), [])
    await cached.translate(TranslationRequest(**ask, tenant="t1"), calls)
    assert inner.asked == 1 and [c.cache_hit for c in calls] == [True]
    calls = []
    await cached.translate(TranslationRequest(**ask, tenant="t2"), calls)
    assert inner.asked == 2 and not any(c.cache_hit for c in calls)


async def test_transcripts_are_kept_sealed_and_partials_never():
    redis, inner = MemoryRedis(), CountingSTT()
    stt = CachedSTT(inner, _cache(redis))
    audio = Audio(np.linspace(-0.5, 0.5, 16000, dtype=np.float32), 16000)
    first = await stt.transcribe(audio, "en-IN", [])
    calls = []
    assert await stt.transcribe(audio, "en-IN", calls) == first and inner.asked == 1 and calls[0].cache_hit
    assert all(b"4111" not in value and b"card" not in value for value in redis.data.values())  # sealed
    assert stt.offers_partials
    await stt.partial(audio, "en-IN")
    await stt.partial(audio, "en-IN")
    assert inner.partials == 2 and len(redis.data) == 1


async def test_a_cache_that_fails_is_a_miss_and_the_engine_answers():
    inner = CountingTTS()
    cache = _cache()  # nothing listens
    tts = CachedTTS(inner, cache)
    calls = []
    assert await _speak(tts, calls=calls) == await _speak(tts) == b"ababcdcd"
    assert inner.asked == 2 and cache.errors >= 2 and not any(c.cache_hit for c in calls)
