"""Crafted audio files for the attacks: each made here, from nothing, by the test."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def flac_without_length(seconds: int = 3600, rate: int = 48000, channels: int = 2) -> bytes:
    """An hour of stereo 48 kHz digital silence (a few hundred KB as FLAC, ~1.3 GiB decoded to
    float32) whose STREAMINFO says nothing about its length (total samples 0 = unknown), so
    no header check can see it coming."""
    buf = io.BytesIO()
    block = np.zeros((rate * 10, channels), dtype="int16")
    with sf.SoundFile(buf, "w", rate, channels, format="FLAC", subtype="PCM_16") as f:
        for _ in range(seconds // 10):
            f.write(block)
    data = bytearray(buf.getvalue())
    # "fLaC", a 4-byte block header, then STREAMINFO: its bytes 10..17 end with the 36-bit total.
    packed = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)
    data[18:26] = packed.to_bytes(8, "big")
    return bytes(data)


def ogg_long(seconds: int = 600, rate: int = 16000) -> bytes:
    """Ten minutes of Vorbis silence: ~40 KB."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, 1, format="OGG", subtype="VORBIS") as f:
        for _ in range(seconds):
            f.write(np.zeros(rate, dtype="float32"))
    return buf.getvalue()


def wav(channels: int = 1, rate: int = 16000, seconds: float = 1.0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(rate * seconds), channels), dtype="int16"), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def wav_lying_about_length(seconds: float = 2.0) -> bytes:
    """A WAV whose RIFF and data sizes claim 4 GiB."""
    data = bytearray(wav(seconds=seconds))
    i = data.find(b"data")
    data[4:8] = data[i + 4 : i + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    return bytes(data)


def flac_wide(seconds: int = 59, rate: int = 655350, channels: int = 8) -> bytes:
    """An honest header that is the bomb: 59 s (under the length limit) of 8-channel silence at
    FLAC's highest sample rate, ~0.3 MB on the wire and ~1.2 GiB decoded to float32."""
    buf = io.BytesIO()
    block = np.zeros((rate, channels), dtype="int16")
    with sf.SoundFile(buf, "w", rate, channels, format="FLAC", subtype="PCM_16") as f:
        for _ in range(seconds):
            f.write(block)
    return buf.getvalue()
