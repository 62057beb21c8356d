"""ElevenLabs text-to-speech, streamed from /v1/text-to-speech/{voice_id}/stream as raw PCM16
(`output_format=pcm_*`), which the pipeline forwards without decoding."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from samvad.audio import whole_samples
from samvad.errors import InputError
from samvad.providers.base import AudioChunk, CallRecord, Capabilities, SpeechRequest, TextToSpeech
from samvad.providers.http import HttpProvider
from samvad.settings import ElevenLabsSettings


VOICE_ID = re.compile(r"[A-Za-z0-9]{20}")


def parse_error(body: Any) -> tuple[str, str | None, str | None]:
    detail = body["detail"]
    if isinstance(detail, list):  # FastAPI-style 422
        first = detail[0] if detail else {}
        return first.get("msg", "validation error"), "validation_error", None
    return detail.get("message", ""), detail.get("code") or detail.get("status"), detail.get("request_id")


class ElevenLabsTTS(TextToSpeech):
    name = "elevenlabs"
    capabilities = Capabilities(streaming=True)

    def __init__(self, settings: ElevenLabsSettings) -> None:
        super().__init__(model=settings.model_id)
        self._s = settings
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        self._http = HttpProvider(
            "elevenlabs", "tts", settings, {"xi-api-key": key}, parse_error,
            fatal_codes=frozenset({"insufficient_credits", "invalid_api_key", "quota_exceeded"}),
        )
        self.sample_rate = int(settings.output_format.split("_")[1])

    async def _stream_impl(self, request: SpeechRequest, rec: CallRecord) -> AsyncIterator[AudioChunk]:
        body: dict[str, Any] = {"text": request.text, "model_id": self._s.model_id}
        if self._s.model_id != "eleven_multilingual_v2":  # that model rejects language_code
            body["language_code"] = request.language.split("-")[0]
        voice = request.voice or self._s.voice_id
        if not VOICE_ID.fullmatch(voice):  # it becomes a URL path segment: checked, never escaped-and-hoped
            raise InputError(f"{voice[:64]!r} is not an ElevenLabs voice id (20 letters and digits)", code="unknown_voice")
        async with self._http.stream(
            rec, "POST", f"/v1/text-to-speech/{voice}/stream", params={"output_format": self._s.output_format}, json=body
        ) as response:
            async for pcm in whole_samples(response.aiter_bytes()):
                yield AudioChunk(pcm16=pcm, sample_rate=self.sample_rate)
