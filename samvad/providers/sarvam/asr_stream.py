"""Sarvam speech-to-text over its streaming socket (`/speech-to-text/ws`): the utterance is sent
in 100 ms frames and flushed, and the final transcripts come back on the same socket. Lower
overhead than multipart REST for live audio, and no 30 s limit.

The service finalises one transcript per utterance segment its VAD detects (a pause splits an
utterance), and honours a flush only on a socket opened with `flush_signal=true`. With
`vad_signals=true` each segment is announced by START_SPEECH, so after the flush the client reads
until it has one transcript per segment (plus a 150 ms settle: a segment finalised early can
arrive before a later one is announced) and joins them; audio with no speech in it gets none, so
a short quiet wait ends that case."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import websockets

from samvad.audio import Audio, float_to_pcm16
from samvad.contracts import Segment, Transcript
from samvad.errors import ProviderError
from samvad.providers.base import CallRecord, SpeechToText
from samvad.providers.sarvam.common import socket_url
from samvad.providers.sarvam.config import SarvamSettings

FRAME_SECONDS = 0.1
NO_SPEECH_WAIT_S = 0.5  # after a flush, how long silence may go unanswered before it is "no speech"
SETTLE_S = 0.15  # after the last announced segment's transcript, how long to wait for another


class SarvamStreamingSTT(SpeechToText):
    name = "sarvam"

    def __init__(self, settings: SarvamSettings) -> None:
        super().__init__(model=settings.stt_model)
        self._s = settings
        self._url = socket_url(settings, "/speech-to-text/ws")

    def _error(self, message: str, *, status: int | None = None, retryable: bool = True) -> ProviderError:
        return ProviderError(
            f"sarvam asr stream: {message}",
            provider="sarvam",
            stage="asr",
            status=status,
            retryable=retryable,
            code="stream_error",
        )

    async def _transcribe_impl(self, audio: Audio, language: str | None, rec: CallRecord) -> Transcript:
        query = urllib.parse.urlencode(
            {
                "language-code": language or "unknown",
                "model": self._s.stt_model,
                "mode": self._s.stt_mode,
                "sample_rate": str(audio.sample_rate),
                "input_audio_codec": "pcm_s16le",
                "flush_signal": "true",
                "vad_signals": "true",
            }
        )
        key = self._s.api_key.get_secret_value() if self._s.api_key else ""
        pcm = float_to_pcm16(audio.samples)
        step = int(audio.sample_rate * FRAME_SECONDS) * 2
        segments: list[dict[str, Any]] = []
        try:
            async with websockets.connect(
                f"{self._url}?{query}",
                additional_headers={"Api-Subscription-Key": key},
                open_timeout=self._s.connect_timeout_s,
            ) as ws:
                for i in range(0, len(pcm), step):
                    await ws.send(
                        json.dumps(
                            {
                                "audio": {
                                    "data": base64.b64encode(pcm[i : i + step]).decode(),
                                    "sample_rate": audio.sample_rate,
                                    "encoding": "audio/wav",  # the socket's only value, even for raw PCM
                                }
                            }
                        )
                    )
                await ws.send(json.dumps({"type": "flush"}))
                starts = 0
                while True:
                    # Waiting for a segment announced: up to the timeout. Every announced one in:
                    # a short settle for a later segment's START_SPEECH still on the wire (an
                    # earlier segment may have been finalised before the later one was heard).
                    owed = starts > len(segments)
                    wait = self._s.timeout_s if owed else (SETTLE_S if segments else NO_SPEECH_WAIT_S)
                    try:
                        msg = json.loads(await _recv(ws, wait))
                    except TimeoutError:
                        if owed:
                            raise
                        break
                    kind, data = msg.get("type"), msg.get("data") or {}
                    if kind == "error":
                        raise self._error(str(data.get("error", "error")), retryable=False)
                    if kind == "events" and data.get("signal_type") == "START_SPEECH":
                        starts += 1
                    elif kind == "data":
                        segments.append(data)
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            raise self._error(f"handshake refused ({status})", status=status, retryable=status >= 500) from None
        except (OSError, websockets.ConnectionClosed, TimeoutError) as exc:
            raise self._error(type(exc).__name__) from None
        return _joined(segments, language, audio.duration)


def _joined(segments: list[dict[str, Any]], language: str | None, duration: float) -> Transcript:
    """One transcript from the segments' transcripts, in order; the language of the most
    confident segment."""
    out, at = [], 0.0
    for data in segments:
        text = (data.get("transcript") or "").strip()
        seconds = float((data.get("metrics") or {}).get("audio_duration") or 0.0)
        if text:
            out.append(Segment(start=at, end=at + seconds, text=text))
        at += seconds
    best = max(segments, key=lambda d: d.get("language_probability") or 0.0, default={})
    probability = best.get("language_probability")
    if len(out) == 1 and len(segments) == 1:
        out[0] = out[0].model_copy(update={"start": 0.0, "end": at or duration})
    return Transcript(
        text=" ".join(seg.text for seg in out),
        language_code=best.get("language_code") or language or "en-IN",
        confidence=max(0.0, min(1.0, float(probability))) if probability is not None else 1.0,
        raw_segments=out,
        language_confidence=max(0.0, min(1.0, float(probability)))
        if language is None and probability is not None
        else None,
    )


async def _recv(ws: Any, timeout: float) -> str:
    import asyncio

    return str(await asyncio.wait_for(ws.recv(), timeout))
