import io

import numpy as np
import pytest
import soundfile as sf

from samvad.audio import decode_audio, wav_bytes
from samvad.errors import InputError

pytestmark = pytest.mark.unit


def _wav(seconds: float, rate: int, channels: int = 1) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([tone] * channels, axis=1), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_resamples_and_downmixes():
    audio = decode_audio(_wav(1.0, 44100, channels=2), target_rate=16000, max_seconds=60)
    assert audio.sample_rate == 16000
    assert audio.samples.ndim == 1
    assert abs(audio.duration - 1.0) < 0.01
    assert 0.2 < np.abs(audio.samples).max() < 0.35


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "audio_empty"),
        (b"this is not audio at all" * 10, "audio_unreadable"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio_unreadable"),
    ],
)
def test_rejects_bad_bytes(data, code):
    with pytest.raises(InputError) as err:
        decode_audio(data, target_rate=16000, max_seconds=60)
    assert err.value.code == code
    assert err.value.message


def test_rejects_too_long_from_header_without_decoding():
    ten_minutes = _wav(600, 8000)
    with pytest.raises(InputError) as err:
        decode_audio(ten_minutes, target_rate=16000, max_seconds=60)
    assert err.value.code == "audio_too_long"
    assert "60" in err.value.message


def test_rejects_too_short():
    with pytest.raises(InputError) as err:
        decode_audio(_wav(0.02, 16000), target_rate=16000, max_seconds=60, min_seconds=0.1)
    assert err.value.code == "audio_empty"


def test_wav_roundtrip():
    pcm = (np.arange(1600, dtype=np.int16) * 7).tobytes()
    data, rate = sf.read(io.BytesIO(wav_bytes(pcm, 16000)), dtype="int16")
    assert rate == 16000 and data.tobytes() == pcm
