"""Sarvam speech-to-text over its streaming socket (`/speech-to-text/ws`): the utterance is sent
in 100 ms frames and flushed, and the final transcript comes back on the same socket. Lower
overhead than multipart REST for live audio, and no 30 s limit."""

from __future__ import annotations

import base64
import json
import urllib.parse

import websockets

from samvad.audio import Audio, float_to_pcm16
from samvad.contracts import Segment, Transcript
from samvad.errors import ProviderError
from samvad.providers.base import CallRecord, Capabilities, SpeechToText
from samvad.settings import SarvamSettings

FRAME_SECONDS = 0.1


class SarvamStreamingSTT(SpeechToText):
    name = "sarvam"
    capabilities = Capabilities(streaming=True)

    def __init__(self, settings: SarvamSettings) -> None:
        super().__init__(model=settings.stt_model)
        self._s = settings
        base = settings.base_url.replace("https://", "wss://").replace("http://", "ws://")
        self._url = base.rstrip("/") + "/speech-to-text/ws"

    def _error(self, message: str, *, status: int | None = None, retryable: bool = True) -> ProviderError:
        return ProviderError(f"sarvam asr stream: {message}", provider="sarvam", stage="asr", status=status,
                             retryable=retryable, code="stream_error")

    async def _transcribe_impl(self, audio: Audio, language: str | None, rec: CallRecord) -> Transcript:
        query = urllib.parse.urlencode({
            "language-code": language or "unknown", "model": self._s.stt_model, "mode": self._s.stt_mode,
            "sample_rate": str(audio.sample_rate), "input_audio_codec": "pcm_s16le",
        })
        key = self._s.api_key.get_secret_value() if self._s.api_key else ""
        pcm = float_to_pcm16(audio.samples)
        step = int(audio.sample_rate * FRAME_SECONDS) * 2
        try:
            async with websockets.connect(f"{self._url}?{query}", additional_headers={"Api-Subscription-Key": key},
                                          open_timeout=self._s.connect_timeout_s) as ws:
                for i in range(0, len(pcm), step):
                    await ws.send(json.dumps({"audio": {
                        "data": base64.b64encode(pcm[i : i + step]).decode(), "sample_rate": audio.sample_rate,
                        "encoding": "audio/wav",  # the socket's only value, even for raw PCM
                    }}))
                await ws.send(json.dumps({"type": "flush"}))
                while True:
                    msg = json.loads(await _recv(ws, self._s.timeout_s))
                    if msg.get("type") == "error":
                        raise self._error(str(msg.get("data", {}).get("error", "error")), retryable=False)
                    if msg.get("type") == "data":
                        data = msg["data"]
                        break
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            raise self._error(f"handshake refused ({status})", status=status, retryable=status >= 500) from None
        except (OSError, websockets.ConnectionClosed, TimeoutError) as exc:
            raise self._error(type(exc).__name__) from None
        text = (data.get("transcript") or "").strip()
        duration = (data.get("metrics") or {}).get("audio_duration") or audio.duration
        probability = data.get("language_probability")
        return Transcript(
            text=text, language_code=data.get("language_code") or language or "en-IN",
            confidence=max(0.0, min(1.0, float(probability))) if probability is not None else 1.0,
            raw_segments=[Segment(start=0.0, end=float(duration), text=text)] if text else [],
        )


async def _recv(ws, timeout: float) -> str:
    import asyncio

    return await asyncio.wait_for(ws.recv(), timeout)
