"""ElevenLabs: text-to-speech."""

from __future__ import annotations

from typing import TYPE_CHECKING

from samvad.providers.elevenlabs.config import ElevenLabsSettings
from samvad.providers.vendor import Vendor

if TYPE_CHECKING:
    from samvad.providers.base import Speech
    from samvad.settings import Settings


def _tts(s: Settings) -> Speech:
    from samvad.providers.elevenlabs.tts import ElevenLabsTTS

    return ElevenLabsTTS(s.providers.of(ElevenLabsSettings))


VENDOR = Vendor("elevenlabs", settings=ElevenLabsSettings, tts={"elevenlabs": _tts})
