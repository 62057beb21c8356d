"""Sarvam AI's settings section, `providers.sarvam`."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from samvad.providers.vendor import VendorSettings


class SarvamSettings(VendorSettings):
    section: ClassVar[str] = "sarvam"

    base_url: str = "https://api.sarvam.ai"
    stt_model: str = "saaras:v3"
    stt_mode: Literal["transcribe", "translate", "verbatim", "translit", "codemix"] = "transcribe"
    # The realtime socket (asr.streaming: sarvam): partials while the caller speaks, and a final
    # without a second upload. `fast` sends partials sooner, `balanced` revises them less.
    realtime_stt_model: Literal["saaras:v3-realtime", "saaras:v4"] = "saaras:v3-realtime"
    realtime_stream_type: Literal["fast", "balanced"] = "balanced"
    # What v1 chat accepts (sarvam-m was retired in 2026-06); "-conversations" is the documented
    # voice-agent variant (32K context).
    chat_model: Literal["sarvam-105b", "sarvam-105b-conversations"] = "sarvam-105b"
    reasoning_effort: Literal["low", "high", "max"] | None = "low"
    max_tokens: int = 512
    temperature: float = 0.2
    translate_model: Literal["mayura:v1", "sarvam-translate:v1"] = "mayura:v1"
    speaker_gender: Literal["Male", "Female"] | None = None
    numerals_format: Literal["international", "native"] = "international"
    tts_model: Literal["bulbul:v3", "bulbul:v4-flash", "bulbul:v2"] = "bulbul:v3"
    tts_speaker: str = "shubh"
    tts_sample_rate: Literal[8000, 16000, 22050, 24000] = 22050
    tts_pace: float = Field(1.0, ge=0.5, le=2.0)
