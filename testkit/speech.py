"""Test helpers: speak text with the offline eSpeak engine into a WAV, and score transcripts."""

from __future__ import annotations

import re

import jiwer
from num2words import num2words

from samvad.audio import wav_bytes
from samvad.providers.base import SpeechRequest, TextToSpeech
from testkit import aio


def speak_wav(
    tts: TextToSpeech, text: str, language: str = "en-IN", *, lead_silence: float = 0.0, tail_silence: float = 0.0
) -> bytes:
    async def run() -> tuple[bytes, int]:
        chunks, rate = [], 0
        async for c in tts.stream(SpeechRequest(text=text, language=language), []):
            chunks.append(c.pcm16)
            rate = c.sample_rate
        return b"".join(chunks), rate

    pcm, rate = aio.run(run)
    pad = lambda seconds: b"\x00\x00" * int(seconds * rate)  # noqa: E731
    return wav_bytes(pad(lead_silence) + pcm + pad(tail_silence), rate)


def normalise(text: str) -> str:
    """Lower-case, numbers as words, punctuation removed: what WER should compare."""
    text = re.sub(r"(\d),(\d)", r"\1\2", text)
    text = re.sub(r"\d+", lambda m: " " + num2words(int(m.group())) + " ", text)
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    return " ".join(text.split())


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalise(reference), normalise(hypothesis))
