"""Audio in and out: decode uploads into 16 kHz mono float32, encode PCM16 WAV."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from samvad.errors import InputError


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def decode_audio(data: bytes, *, target_rate: int, max_seconds: float, min_seconds: float = 0.0) -> Audio:
    """Decode an uploaded file (WAV, FLAC, OGG: anything libsndfile reads) to mono `target_rate`.

    Other sample rates are resampled; stereo is mixed down. Raises `InputError` with a stable
    code for empty, unreadable, too long or too short audio.
    """
    if not data:
        raise InputError("the audio is empty: send a WAV file (PCM16 mono 16 kHz preferred)", code="audio_empty")
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        raise InputError(
            "the audio could not be decoded: send a WAV, FLAC or OGG file (PCM16 mono 16 kHz preferred)",
            code="audio_unreadable",
        ) from None
    # Check the length from the header before decoding, so a 10-minute upload costs nothing.
    if info.frames and info.samplerate and info.frames / info.samplerate > max_seconds:
        raise InputError(
            f"the audio is {info.frames / info.samplerate:.1f} s long; the limit is {max_seconds:g} s",
            code="audio_too_long",
        )
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError):
        raise InputError("the audio data is truncated or corrupt", code="audio_unreadable") from None
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if rate != target_rate:
        mono = soxr.resample(mono, rate, target_rate).astype(np.float32)
    audio = Audio(np.ascontiguousarray(mono, dtype=np.float32), target_rate)
    if audio.duration > max_seconds:
        raise InputError(f"the audio is {audio.duration:.1f} s long; the limit is {max_seconds:g} s", code="audio_too_long")
    if audio.duration < max(min_seconds, 1e-9):
        raise InputError(
            f"the audio is {audio.duration:.2f} s long; send at least {max(min_seconds, 0.01):g} s of speech",
            code="audio_empty",
        )
    return audio


async def whole_samples(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Re-cut a byte stream of PCM16 so no chunk ends in the middle of a sample."""
    odd = b""
    async for data in chunks:
        data = odd + data
        cut = len(data) - len(data) % 2
        odd = data[cut:]
        if cut:
            yield data[:cut]


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def wav_bytes(pcm16: bytes, sample_rate: int) -> bytes:
    """Wrap raw PCM16 mono in a WAV container."""
    buf = io.BytesIO()
    sf.write(buf, np.frombuffer(pcm16, dtype="<i2"), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
