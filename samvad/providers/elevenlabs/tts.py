"""ElevenLabs text-to-speech, streamed from /v1/text-to-speech/{voice_id}/stream as raw PCM16
(`output_format=pcm_*`), which the pipeline forwards without decoding.

Each model speaks its own set of languages: the provider declares the model's, so a failover
chain passes over ElevenLabs for a caller it would speak wrongly (providers.md §13.1)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from samvad.audio import whole_samples
from samvad.errors import InputError
from samvad.providers.base import AudioChunk, CallRecord, Capabilities, SpeechRequest, TextToSpeech
from samvad.providers.elevenlabs.config import ElevenLabsSettings
from samvad.providers.http import HttpProvider

VOICE_ID = re.compile(r"[A-Za-z0-9]{20}")

# ISO 639-1 codes each model speaks (providers.md §13.1). The v2 models' 29 languages include
# only Hindi and Tamil of India's; eleven_v3 speaks most of them (not Odia).
_V2 = frozenset("en ja zh de hi fr ko pt it es id nl tr fil pl sv bg ro ar cs el fi hr ms sk da ta uk ru".split())
MODEL_LANGUAGES: dict[str, frozenset[str]] = {
    "eleven_multilingual_v2": _V2,
    "eleven_flash_v2_5": _V2 | {"hu", "no", "vi"},
    "eleven_turbo_v2_5": _V2 | {"hu", "no", "vi"},
    "eleven_v3": _V2 | frozenset("bn gu kn ml mr pa te ne as sd ur".split()),
    "eleven_flash_v2": frozenset({"en"}),
    "eleven_turbo_v2": frozenset({"en"}),
}
ISO = {"od": "or"}  # Samvad's (Sarvam's) code for Odia -> ISO 639-1


def iso(language: str) -> str:
    base = language.split("-")[0].lower()
    return ISO.get(base, base)


class Spoken(frozenset[str]):
    """The languages a model speaks, asked with Samvad's codes ("hi-IN", "od-IN")."""

    def __contains__(self, language: object) -> bool:
        return isinstance(language, str) and frozenset.__contains__(self, iso(language))


def parse_error(body: Any) -> tuple[str, str | None, str | None]:
    detail = body["detail"]
    if isinstance(detail, list):  # FastAPI-style 422
        first = detail[0] if detail else {}
        return first.get("msg", "validation error"), "validation_error", None
    return detail.get("message", ""), detail.get("code") or detail.get("status"), detail.get("request_id")


class ElevenLabsTTS(TextToSpeech):
    name = "elevenlabs"

    def __init__(self, settings: ElevenLabsSettings) -> None:
        super().__init__(model=settings.model_id)
        self._s = settings
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        self._http = HttpProvider(
            "elevenlabs",
            "tts",
            settings,
            {"xi-api-key": key},
            parse_error,
            fatal_codes=frozenset({"insufficient_credits", "invalid_api_key", "quota_exceeded"}),
        )
        self.sample_rate = int(settings.output_format.split("_")[1])
        self.capabilities = Capabilities(languages=Spoken(MODEL_LANGUAGES[settings.model_id]))

    async def _stream_impl(self, request: SpeechRequest, rec: CallRecord) -> AsyncIterator[AudioChunk]:
        spoken = self.capabilities.languages
        if spoken is not None and request.language not in spoken:
            raise InputError(f"{self._s.model_id} does not speak {request.language}", code="unsupported_language")
        body: dict[str, Any] = {"text": request.text, "model_id": self._s.model_id}
        if self._s.model_id != "eleven_multilingual_v2":  # that model rejects language_code
            body["language_code"] = iso(request.language)
        if settings := self._s.voice_settings.model_dump(exclude_none=True):
            body["voice_settings"] = settings
        if self._s.send_context and request.previous_text:
            body["previous_text"] = request.previous_text
        voice = request.voice or self._s.voice_id
        if not VOICE_ID.fullmatch(voice):  # it becomes a URL path segment: checked, never escaped-and-hoped
            raise InputError(
                f"{voice[:64]!r} is not an ElevenLabs voice id (20 letters and digits)", code="unknown_voice"
            )
        async with self._http.stream(
            rec,
            "POST",
            f"/v1/text-to-speech/{voice}/stream",
            params={"output_format": self._s.output_format},
            json=body,
        ) as response:
            async for pcm in whole_samples(response.aiter_bytes()):
                yield AudioChunk(pcm16=pcm, sample_rate=self.sample_rate)
