import asyncio

import numpy as np
import pytest

from samvad.errors import InputError
from samvad.providers.base import SpeechRequest

pytestmark = pytest.mark.unit


async def _collect(tts, text, language="en-IN", calls=None):
    calls = [] if calls is None else calls
    return [c async for c in tts.stream(SpeechRequest(text=text, language=language), calls)]


async def test_streams_several_chunks_and_records_usage(tts):
    calls = []
    chunks = await _collect(tts, "Your card has been blocked. A new card will arrive within seven days.", calls=calls)
    assert len(chunks) > 5
    pcm = np.frombuffer(b"".join(c.pcm16 for c in chunks), dtype=np.int16)
    assert np.abs(pcm).max() > 1000  # not silence
    assert chunks[0].sample_rate == 22050
    (call,) = calls
    assert call.provider == "espeak" and call.outcome == "ok"
    assert call.usage.characters == len("Your card has been blocked. A new card will arrive within seven days.")
    assert call.ttfb_ms is not None and call.ttfb_ms <= call.latency_ms


@pytest.mark.parametrize(
    "language", ["hi-IN", "ta-IN", "te-IN", "bn-IN", "mr-IN", "gu-IN", "kn-IN", "ml-IN", "pa-IN", "od-IN"]
)
async def test_indian_language_voices_speak(tts, language):
    chunks = await _collect(tts, "नमस्ते 1 2 3", language)
    assert sum(len(c.pcm16) for c in chunks) > 2000


async def test_unknown_language_is_an_input_error(tts):
    with pytest.raises(InputError):
        await _collect(tts, "hello", "xx-XX")


async def test_cancelling_stops_synthesis_and_records_cancel(tts):
    calls = []
    stream = tts.stream(SpeechRequest(text="This is a long sentence. " * 40, language="en-IN"), calls)
    first = await anext(stream)
    assert first.pcm16
    await stream.aclose()
    assert calls[-1].outcome == "cancelled"
    # The engine is free again straight away.
    chunks = await asyncio.wait_for(_collect(tts, "Next."), timeout=5)
    assert chunks
