"""Build the configured provider for each stage, by name."""

from __future__ import annotations

from samvad.providers.base import ChatModel, SpeechToText, TextToSpeech, Translator
from samvad.settings import Settings


def build_stt(settings: Settings) -> SpeechToText:
    if settings.asr.provider == "stub":
        from samvad.providers.stub import StubSTT

        return StubSTT()
    from samvad.providers.local.whisper import WhisperSTT

    return WhisperSTT(settings.asr.whisper)


def build_llm(settings: Settings) -> ChatModel:
    if settings.llm.provider == "stub":
        from samvad.providers.stub import StubChat

        return StubChat()
    from samvad.embeddings import get_embedder
    from samvad.providers.local.extractive import ExtractiveAnswerer

    return ExtractiveAnswerer(settings.llm.extractive, get_embedder(settings.embeddings))


def build_translator(settings: Settings) -> Translator:
    from samvad.providers.local.identity import IdentityTranslator

    return IdentityTranslator()


def build_tts(settings: Settings) -> TextToSpeech:
    if settings.tts.provider == "stub":
        from samvad.providers.stub import StubTTS

        return StubTTS()
    from samvad.providers.local.espeak import EspeakTTS

    return EspeakTTS(settings.tts.espeak, settings.languages)
