"""Assemble the in-process pipeline (every stage in this process) from settings."""

from __future__ import annotations

from rag_index.build import Progress, ensure_index
from rag_index.retriever import Retriever
from samvad.embeddings import get_embedder
from samvad.providers import registry
from samvad.providers.stub.engines import StubRetriever
from samvad.settings import Settings
from samvad.turn import Engines, TurnRunner


def local_runner(settings: Settings, progress: Progress | None = None) -> TurnRunner:
    engines = Engines(
        stt=registry.build_stt(settings),
        retriever=StubRetriever() if settings.rag.retriever == "stub" else _faiss(settings, progress),
        llm=registry.build_llm(settings),
        translator=registry.build_translator(settings),
        tts=registry.build_tts(settings),
        language_id=registry.build_language_id(settings),
    )
    return TurnRunner(engines, settings)


def _faiss(settings: Settings, progress: Progress | None) -> Retriever:
    # In one process the index folder is searched directly, whatever `rag.store` the service uses.
    embedder = get_embedder(settings.embeddings)
    return Retriever(ensure_index(settings, embedder, progress), embedder)
