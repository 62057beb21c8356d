"""The retrieval stage service wrapped by the Retriever deployment."""

from __future__ import annotations

from typing import Any

from rag_index.build import ensure_index
from rag_index.retriever import Retriever
from samvad.contracts import Passage
from samvad.embeddings import get_embedder
from samvad.settings import Settings


class RetrievalStage:
    def __init__(self, settings: Settings | dict[str, Any]) -> None:
        s = settings if isinstance(settings, Settings) else Settings.model_validate(settings)
        if s.rag.retriever == "stub":
            from samvad.providers.stub import StubRetriever

            self.retriever = StubRetriever()
            return
        embedder = get_embedder(s.embeddings)
        self.retriever = Retriever(ensure_index(s, embedder), embedder)

    async def search(self, query: str, k: int) -> list[Passage]:
        return await self.retriever.asearch(query, k)
