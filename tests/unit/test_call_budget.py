"""A voice call's budget: messages per second, audio ahead of real time, short frames and
malformed messages, each closing the call once spent."""

import pytest

from samvad.call_budget import CallBudget, OverBudget
from samvad.settings import VoiceSettings

pytestmark = pytest.mark.unit


def test_messages_have_a_rate_with_a_second_of_burst():
    b = CallBudget(VoiceSettings(max_messages_per_s=10), opened=0.0)
    for _ in range(10):
        b.message(now=0.0)
    with pytest.raises(OverBudget, match="10 messages a second"):
        b.message(now=0.0)
    b = CallBudget(VoiceSettings(max_messages_per_s=10), opened=0.0)
    for i in range(100):  # at the rate: never refused
        b.message(now=i * 0.1)


def test_audio_ahead_of_real_time_ends_the_call_and_short_frames_are_refused():
    b = CallBudget(VoiceSettings(audio_burst_s=5.0, min_frame_ms=10), opened=0.0)
    for i in range(50):  # real time: 100 ms frames every 100 ms
        assert b.audio(0.1, now=i * 0.1)
    assert b.audio(4.9, now=5.0)  # a burst within the allowance
    with pytest.raises(OverBudget, match="ahead of real time"):
        b.audio(0.2, now=5.0)
    short = CallBudget(VoiceSettings(min_frame_ms=10, max_bad_messages=2), opened=0.0)
    assert not short.audio(0.005, now=0.0) and short.received_s == 0
    short.malformed()
    with pytest.raises(OverBudget, match="2 malformed"):
        short.audio(0.001, now=0.0)


def test_silence_earns_no_credit_for_a_burst_later():
    """Pings (or nothing) for minutes, then minutes of audio at once: closed as soon as the audio
    runs `audio_burst_s` ahead, however long the call was quiet before."""
    b = CallBudget(VoiceSettings(audio_burst_s=5.0), opened=0.0)
    for i in range(1, 50):
        assert b.audio(0.1, now=1700.0 + i * 0.001) or True
    with pytest.raises(OverBudget):
        for i in range(50, 200):
            b.audio(0.1, now=1700.0 + i * 0.001)
