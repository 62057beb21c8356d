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

    @property
    def peak_dbfs(self) -> float:
        """The loudest sample, in dB full scale (-inf for digital silence)."""
        peak = float(np.abs(self.samples).max()) if len(self.samples) else 0.0
        return 20 * np.log10(peak) if peak > 0 else float("-inf")


MAX_CHANNELS = 2
MIN_RATE, MAX_RATE = 8000, 48000
BLOCK_SECONDS = 1.0  # decoded and checked against the budget one second at a time
UNKNOWN_LENGTH = 2**63 - 1  # libsndfile's frame count for a stream that does not say (a FLAC with no total)


FORMATS = frozenset({"WAV", "WAVEX", "FLAC", "OGG"})  # what the API documents (soundfile's major formats)


def _documented(data: bytes) -> bool:
    """A WAV (RIFF…WAVE), FLAC or OGG file, by its first bytes."""
    return (data[:4] == b"RIFF" and data[8:12] == b"WAVE") or data[:4] in (b"fLaC", b"OggS")


def decode_audio(data: bytes, *, target_rate: int, max_seconds: float, min_seconds: float = 0.0) -> Audio:
    """Decode an uploaded file (WAV, FLAC, OGG: anything libsndfile reads) to mono `target_rate`.

    Other sample rates are resampled; stereo is mixed down. Raises `InputError` with a stable
    code for empty, unreadable, too long or too short audio.

    Budgets are checked before any sample is decoded (channels, sample rate, the length the
    header claims), and again while decoding, a second at a time: a header that lies about its
    length (a FLAC with no total, an OGG of a few KB that expands to hours) stops at the budget,
    so a decode never holds more than `max_seconds` of audio.
    """
    if not data:
        raise InputError("the audio is empty: send a WAV file (PCM16 mono 16 kHz preferred)", code="audio_empty")
    if not _documented(data):  # before libsndfile sees it: none of its other parsers is reached
        raise InputError(
            "the audio could not be decoded: send a WAV, FLAC or OGG file (PCM16 mono 16 kHz preferred)",
            code="audio_unreadable",
        )
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        raise InputError(
            "the audio could not be decoded: send a WAV, FLAC or OGG file (PCM16 mono 16 kHz preferred)",
            code="audio_unreadable",
        ) from None
    with f:
        if f.format not in FORMATS:  # libsndfile reads dozens more; each is more parser to attack
            raise InputError(
                f"audio in {f.format} is not accepted: send a WAV, FLAC or OGG file", code="audio_unreadable"
            )
        if not 1 <= f.channels <= MAX_CHANNELS:
            raise InputError(f"the audio has {f.channels} channels; send mono or stereo", code="audio_channels")
        if not MIN_RATE <= f.samplerate <= MAX_RATE:
            raise InputError(
                f"the audio's sample rate is {f.samplerate} Hz; send {MIN_RATE}-{MAX_RATE} Hz", code="audio_sample_rate"
            )
        budget = int(max_seconds * f.samplerate)  # frames
        if budget < f.frames < UNKNOWN_LENGTH:
            raise InputError(
                f"the audio is {f.frames / f.samplerate:.1f} s long; the limit is {max_seconds:g} s",
                code="audio_too_long",
            )
        blocks, total = [], 0
        block = max(1, int(f.samplerate * BLOCK_SECONDS))
        try:
            while True:
                chunk = f.read(min(block, budget + 1 - total), dtype="float32", always_2d=True)
                if not len(chunk):
                    break
                total += len(chunk)
                if total > budget:
                    raise InputError(f"the audio is longer than the limit of {max_seconds:g} s", code="audio_too_long")
                blocks.append(chunk.mean(axis=1) if chunk.shape[1] > 1 else chunk[:, 0])
        except (sf.LibsndfileError, RuntimeError):
            raise InputError("the audio data is truncated or corrupt", code="audio_unreadable") from None
        rate = f.samplerate
    mono = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    if rate != target_rate:
        mono = soxr.resample(mono, rate, target_rate).astype(np.float32)
    audio = Audio(np.ascontiguousarray(mono, dtype=np.float32), target_rate)
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
    return bytes((np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def wav_bytes(pcm16: bytes, sample_rate: int) -> bytes:
    """Wrap raw PCM16 mono in a WAV container."""
    buf = io.BytesIO()
    sf.write(buf, np.frombuffer(pcm16, dtype="<i2"), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
