"""ElevenLabs' settings section, `providers.elevenlabs`."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from samvad.providers.vendor import VendorSettings


class ElevenVoiceSettings(BaseModel):
    """ElevenLabs `voice_settings`: unset fields keep the voice's own."""

    stability: float | None = Field(None, ge=0.0, le=1.0)
    similarity_boost: float | None = Field(None, ge=0.0, le=1.0)
    style: float | None = Field(None, ge=0.0, le=1.0)
    use_speaker_boost: bool | None = None
    speed: float | None = Field(None, ge=0.7, le=1.2)


class ElevenLabsSettings(VendorSettings):
    section: ClassVar[str] = "elevenlabs"

    base_url: str = "https://api.elevenlabs.io"
    # Which languages a model speaks differs (samvad.providers.elevenlabs.tts.MODEL_LANGUAGES): the
    # flash and multilingual v2 models speak English, Hindi and Tamil of ours; eleven_v3 all but Odia.
    model_id: Literal[
        "eleven_flash_v2_5",
        "eleven_turbo_v2_5",
        "eleven_multilingual_v2",
        "eleven_v3",
        "eleven_flash_v2",
        "eleven_turbo_v2",
    ] = "eleven_flash_v2_5"
    voice_id: str = "21m00Tcm4TlvDq8ikWAM"
    # Raw PCM16 mono: what the pipeline streams, with no decoder in the path.
    output_format: Literal["pcm_16000", "pcm_22050", "pcm_24000"] = "pcm_22050"
    voice_settings: ElevenVoiceSettings = ElevenVoiceSettings()
    # Send the answer's previous sentence as `previous_text`, so sentence-by-sentence synthesis
    # keeps one prosody (the next sentence is not known yet while the answer streams).
    send_context: bool = True
