"""Partial transcripts of speech still going on: made only by an idle local engine, and given
up the moment a real decode (an endpoint's) needs the engine."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from samvad.audio import Audio, decode_audio
from samvad.providers.local.espeak import EspeakTTS
from samvad.providers.local.whisper import PARTIAL_WINDOW_S, WhisperSTT
from testkit.speech import speak_wav, wer

pytestmark = pytest.mark.unit
QUESTION = "How do I block my lost debit card today"


@pytest.fixture(scope="module")
def speech(settings) -> Audio:
    wav = speak_wav(EspeakTTS(settings.tts.espeak, settings.languages), QUESTION, tail_silence=0.2)
    return decode_audio(wav, target_rate=16000, max_seconds=60)


@pytest.fixture(scope="module")
def stt(settings) -> WhisperSTT:
    return WhisperSTT(settings.asr.whisper)


async def test_an_idle_engine_transcribes_speech_so_far(stt, speech):
    result = await stt.partial(speech, "en-IN")
    assert result is not None and wer(QUESTION, result.text) <= 0.3, result


async def test_a_busy_engine_offers_no_partial_and_spends_nothing(stt, speech):
    real = asyncio.create_task(stt.transcribe(speech, "en-IN", []))
    await asyncio.sleep(0)  # the real decode holds the engine
    cpu0 = time.process_time()
    assert await stt.partial(speech, "en-IN") is None
    assert time.process_time() - cpu0 < 0.05
    assert wer(QUESTION, (await real).text) <= 0.3


async def test_a_real_decode_preempts_a_running_partial(stt, speech):
    partial = asyncio.create_task(stt.partial(speech, "en-IN"))
    await asyncio.sleep(0.01)  # the partial is in its encoder pass (or about to start it)
    calls: list = []
    real = await stt.transcribe(speech, "en-IN", calls)
    assert await partial is None  # it gave the engine up instead of finishing its decode
    assert wer(QUESTION, real.text) <= 0.3 and len(calls) == 1


async def test_audio_outside_the_utterance_window_gets_no_partial(stt):
    assert await stt.partial(Audio(np.zeros(8000, dtype=np.float32), 16000), "en-IN") is None  # 0.5 s


async def test_partials_stop_at_their_share_of_the_engine(settings, speech):
    """Many callers speaking at once: partials take at most partial_max_share of the engine's
    time, then the engine answers none until the share falls again."""
    stt = WhisperSTT(settings.asr.whisper.model_copy(update={"partial_max_share": 0.1}))
    made = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:
        made += await stt.partial(speech, "en-IN") is not None
    busy = stt._partial_share()
    # The last one may overshoot the share by its own length (measured, not assumed: on a slow
    # machine one partial took ~1 s, and a fixed 0.5 s allowance failed).
    start, end = stt._partial_spans[-1]
    assert made >= 1 and busy <= 0.1 + (end - start) / PARTIAL_WINDOW_S + 0.01
    assert await stt.partial(speech, "en-IN") is None


async def test_only_a_chain_with_a_local_engine_offers_partials(settings):
    """A voice call makes no hop for partials when the ASR chain cannot make one: a billed
    provider (Sarvam) and the stub never do; a chain with Whisper anywhere in it does."""
    from samvad.providers import registry
    from samvad.providers.stub.engines import StubSTT

    def chain(*names: str):
        return registry.build_stt(
            settings.model_copy(update={"asr": settings.asr.model_copy(update={"providers": list(names)})})
        )

    assert not StubSTT().offers_partials and not chain("stub").offers_partials
    assert chain("whisper").offers_partials and chain("sarvam", "whisper").offers_partials
    assert not chain("sarvam").offers_partials
    assert await chain("sarvam").partial(Audio(np.zeros(32000, dtype=np.float32), 16000), "en-IN") is None


async def test_partials_follow_the_chains_language_rules(settings, speech):
    """In a failover chain, an English-only engine (tiny.en) is skipped for a Hindi caller's
    real decodes, so it makes no partials for them either (Sarvam, first, offers none)."""
    from samvad.providers import registry

    light = settings.model_copy(
        update={
            "asr": settings.asr.model_copy(
                update={
                    "providers": ["sarvam", "whisper"],
                    "whisper": settings.asr.whisper.model_copy(update={"model": "tiny.en"}),
                }
            )
        }
    )
    chain = registry.build_stt(light)
    assert await chain.partial(speech, "hi-IN") is None
    assert (await chain.partial(speech, "en-IN")).text
