"""Sarvam speech-to-text (REST /speech-to-text, multipart). Audio longer than the 30 s REST
limit is cut at quiet points into pieces and transcribed piece by piece."""

from __future__ import annotations

import numpy as np

from samvad.audio import Audio, float_to_pcm16, wav_bytes
from samvad.contracts import Segment, Transcript
from samvad.providers.base import CallRecord, SpeechToText
from samvad.providers.sarvam.common import http
from samvad.providers.sarvam.config import SarvamSettings

MAX_SECONDS = 29.5  # the REST limit is 30 s; keep a margin for resampling rounding


def split_audio(audio: Audio, max_seconds: float = MAX_SECONDS) -> list[np.ndarray]:
    """Pieces of at most `max_seconds`, each cut at the quietest 50 ms in its last 5 s."""
    rate, samples = audio.sample_rate, audio.samples
    limit, window, pieces, start = int(max_seconds * rate), int(0.05 * rate), [], 0
    while len(samples) - start > limit:
        search_from = start + limit - 5 * rate
        region = samples[search_from : start + limit]
        energy = np.convolve(region**2, np.ones(window), mode="valid")
        cut = search_from + int(np.argmin(energy)) + window // 2
        pieces.append(samples[start:cut])
        start = cut
    pieces.append(samples[start:])
    return pieces


class SarvamSTT(SpeechToText):
    name = "sarvam"

    def __init__(self, settings: SarvamSettings) -> None:
        super().__init__(model=settings.stt_model)
        self._s = settings
        self._http = http("asr", settings)

    async def _transcribe_impl(self, audio: Audio, language: str | None, rec: CallRecord) -> Transcript:
        texts, segments, detected, probability, offset = [], [], None, None, 0.0
        for piece in split_audio(audio):
            data = {"model": self._s.stt_model, "mode": self._s.stt_mode, "language_code": language or "unknown"}
            files = {"file": ("audio.wav", wav_bytes(float_to_pcm16(piece), audio.sample_rate), "audio/wav")}
            body = (await self._http.request(rec, "POST", "/speech-to-text", data=data, files=files)).json()
            text = body.get("transcript", "").strip()
            duration = len(piece) / audio.sample_rate
            if text:
                texts.append(text)
                segments.append(Segment(start=offset, end=offset + duration, text=text))
            detected = detected or body.get("language_code")
            probability = body.get("language_probability") if probability is None else probability
            offset += duration
        # Sarvam reports no transcript confidence; the language probability (when it detected the
        # language) is the only signal it gives, otherwise we report full confidence.
        confidence = float(probability) if probability is not None else 1.0
        return Transcript(
            text=" ".join(texts),
            language_code=detected or language or "en-IN",
            confidence=max(0.0, min(1.0, confidence)),
            raw_segments=segments,
            language_confidence=max(0.0, min(1.0, float(probability)))
            if language is None and probability is not None
            else None,
        )
