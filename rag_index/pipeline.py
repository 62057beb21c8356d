"""Assemble the in-process pipeline (every stage in this process) from settings."""

from __future__ import annotations

from rag_index.build import Progress, ensure_index
from rag_index.retriever import Retriever
from samvad.embeddings import get_embedder
from samvad.providers import registry
from samvad.settings import Settings
from samvad.turn import Engines, TurnRunner


def local_runner(settings: Settings, progress: Progress | None = None) -> TurnRunner:
    embedder = get_embedder(settings.embeddings)
    retriever = Retriever(ensure_index(settings, embedder, progress), embedder)
    engines = Engines(
        stt=registry.build_stt(settings),
        retriever=retriever,
        llm=registry.build_llm(settings),
        translator=registry.build_translator(settings),
        tts=registry.build_tts(settings),
    )
    return TurnRunner(engines, settings)
