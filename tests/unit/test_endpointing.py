"""Endpointing by the words (samvad.voice.sounds_complete) and ending an utterance early."""

import numpy as np
import pytest

from samvad.providers.local.vad import Endpointer, SileroVad, SpeechEnded
from samvad.voice import sounds_complete

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text",
    [
        "How do I block my lost debit card?",
        "What is the UPI limit per day?",
        "I want to close my account.",
        "Stop!",
        "Yes.",
        "Mera card block karo.",
    ],
)
def test_finished_utterances_sound_complete(text):
    assert sounds_complete(text)


@pytest.mark.parametrize(
    "text",
    [
        "My account number is",
        "My account number is...",
        "I want to know about my",
        "and the",
        "Okay,",
        "How do I block my",
        "",
        "Um.",
        "Transfer money to…",
    ],
)
def test_trailing_or_fragmentary_utterances_wait(text):
    assert not sounds_complete(text)


class _Scripted(SileroVad):
    def __init__(self, probs):
        super().__init__(16000)
        self.probs = iter(probs)

    def probability(self, frame) -> float:
        return next(self.probs)


def test_end_now_ends_the_open_utterance_with_its_audio(settings):
    ep = Endpointer(_Scripted([0.9] * 20 + [0.0] * 5), settings.vad)
    events = ep.feed(np.full(512 * 25, 0.1, dtype=np.float32))
    assert ep.in_speech and not any(isinstance(e, SpeechEnded) for e in events)  # 5 silent frames < 400 ms
    frames = ep.speech_frames
    ended = ep.end_now()
    assert isinstance(ended, SpeechEnded) and ended.speech_frames == frames and not ended.forced
    assert len(ended.audio) >= 20 * 512 and not ep.in_speech
    assert ep.end_now() is None


def test_short_speech_interrupts_only_when_its_words_ask_to():
    """The rule the voice call applies to speech shorter than barge_in_min_ms during an answer:
    a stop word in any script interrupts; a misheard backchannel does not."""
    from samvad.settings import VoiceSettings
    from samvad.voice import asks_to_stop

    v = VoiceSettings()
    for heard in ("Stop!", "Wait.", "रुको।", "Ruko, ruko", "No, that's wrong"):
        assert asks_to_stop(heard, v, "hi-IN"), heard
    for heard in ("HUN!", "Huh?", "Okay.", "Hmm", "Bye.", "Haan ji", "हाँ", ""):
        assert not asks_to_stop(heard, v, "hi-IN"), heard
    assert asks_to_stop("நில்லு", v, "ta-IN") and not asks_to_stop("நில்லு", v, "hi-IN")
