"""Audio bombs against the decoder itself (the routes are attacked in test_routes.py)."""

from __future__ import annotations

import resource
import time

import pytest

from samvad.audio import decode_audio
from samvad.errors import InputError
from tests.security import bombs

pytestmark = pytest.mark.unit


def _decode(data: bytes, max_seconds: float = 60.0):
    return decode_audio(data, target_rate=16000, max_seconds=max_seconds, min_seconds=0.1)


def test_a_flac_that_hides_its_length_stops_at_the_budget():
    bomb = bombs.flac_without_length()
    assert len(bomb) < 2 << 20  # small on the wire...
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(InputError) as err:
        _decode(bomb)
    assert err.value.code == "audio_too_long"
    assert time.perf_counter() - t0 < 1.0
    # ...and 60 s of stereo 48 kHz float32 is ~23 MB: the hour (~1.3 GiB) was never held.
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) < 100 * 1024  # KiB


@pytest.mark.parametrize(
    "data,code",
    [
        (bombs.flac_wide(), "audio_channels"),  # 0.3 MB that decoded to 1.3 GiB before (issue 13)
        (bombs.flac_wide(channels=2), "audio_sample_rate"),
        (bombs.ogg_long(), "audio_too_long"),
        (bombs.wav(channels=8), "audio_channels"),
        (bombs.wav(rate=384000, seconds=0.2), "audio_sample_rate"),
        (bombs.wav(rate=4000), "audio_sample_rate"),
    ],
    ids=["flac-8ch-655kHz", "flac-655kHz", "ogg-10-min", "wav-8-channels", "wav-384-kHz", "wav-4-kHz"],
)
def test_budgets_are_checked_before_decoding(data, code):
    t0 = time.perf_counter()
    with pytest.raises(InputError) as err:
        _decode(data)
    assert err.value.code == code
    assert time.perf_counter() - t0 < 0.5


def test_a_wav_claiming_4_gib_decodes_what_it_holds():
    assert abs(_decode(bombs.wav_lying_about_length(2.0)).duration - 2.0) < 0.01


def test_a_stream_of_exactly_the_budget_is_accepted_and_one_frame_more_is_not():
    assert _decode(bombs.wav(seconds=3.0), max_seconds=3.0).duration == pytest.approx(3.0)
    with pytest.raises(InputError):
        _decode(bombs.wav(seconds=3.01), max_seconds=3.0)
