"""Sarvam AI: speech-to-text, chat, translation and text-to-speech (contracts: shared/providers.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from samvad.providers.sarvam.config import SarvamSettings
from samvad.providers.vendor import Vendor

if TYPE_CHECKING:
    from samvad.providers.base import Chat, LanguageIdentifier, RealtimeSpeechToText, Recognizer, Speech, Translation
    from samvad.settings import Settings


def _asr(s: Settings) -> Recognizer:
    from samvad.providers.sarvam.asr import SarvamSTT

    return SarvamSTT(s.providers.of(SarvamSettings))


def _asr_stream(s: Settings) -> Recognizer:
    from samvad.providers.sarvam.asr_stream import SarvamStreamingSTT

    return SarvamStreamingSTT(s.providers.of(SarvamSettings))


def _realtime(s: Settings) -> RealtimeSpeechToText:
    from samvad.providers.sarvam.asr_realtime import SarvamRealtimeSTT

    return SarvamRealtimeSTT(s.providers.of(SarvamSettings))


def _llm(s: Settings, warm_now: bool) -> Chat:
    from samvad.providers.sarvam.llm import SarvamChat

    return SarvamChat(s.providers.of(SarvamSettings), s.providers.system_prompt)


def _translate(s: Settings) -> Translation:
    from samvad.providers.sarvam.translate import SarvamTranslator

    return SarvamTranslator(s.providers.of(SarvamSettings))


def _tts(s: Settings) -> Speech:
    from samvad.providers.sarvam.tts import SarvamTTS

    return SarvamTTS(s.providers.of(SarvamSettings))


def _language_id(s: Settings) -> LanguageIdentifier:
    from samvad.providers.sarvam.language_id import SarvamLanguageId

    return SarvamLanguageId(s.providers.of(SarvamSettings))


VENDOR = Vendor(
    "sarvam",
    settings=SarvamSettings,
    asr={"sarvam": _asr, "sarvam_stream": _asr_stream},
    realtime_asr={"sarvam": _realtime},
    llm={"sarvam": _llm},
    translation={"sarvam": _translate},
    tts={"sarvam": _tts},
    language_id={"sarvam": _language_id},
)
