"""Load an index folder and answer top-k queries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import faiss
import numpy as np

from rag_index.build import CHUNKS_FILE, FAISS_FILE, IndexInvalidError, read_manifest
from rag_index.stores.base import Hit, StoreDown, StoreInfo, VectorStore, faiss_hits, unavailable
from samvad import metrics
from samvad.contracts import Passage
from samvad.embeddings import Embedder, scale
from samvad.guardrails.attack_model import AttackLibrary, AttackModel, clauses
from samvad.language import devanagari_reading
from samvad.providers.breaker import CircuitBreaker

_MODELS: dict[tuple[str, AttackLibrary], AttackModel] = {}


class QueryEncoder:
    """Query vectors and the injection check, for a retriever over any store (the embedder's
    work; the store only finds the nearest chunks)."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def query_vectors(self, texts: list[str], *, readings: bool = True) -> np.ndarray:
        """Query vectors, as the search (`readings`) and the attack check (without) encode them."""
        return self._queries(texts, plain=0 if readings else len(texts))

    def _queries(self, texts: list[str], plain: int = 0) -> np.ndarray:
        """Query vectors, in one batch; with a multilingual embedder, romanised Hindi is encoded
        together with its Devanagari reading and the two averaged (Hinglish recall@5 on the sample
        QA set 0.89 -> 0.97 with e5; English questions are untouched). The first `plain` texts
        are encoded as they are: the attack check's classifier was fitted on plain text, and
        does better on Hinglish without the reading (bench/guardrails.py)."""
        readings = [None] * plain + (
            [devanagari_reading(t) for t in texts[plain:]] if self._embedder.multilingual else []
        )
        extra = [r for r in readings if r]
        # Each distinct text encoded once: a one-clause question is both the attack check's text
        # and the search's query, and a Hinglish one's plain vector is half of its search vector.
        unique = list(dict.fromkeys(texts + extra))
        encoded = self._embedder.queries(unique)
        vectors = (
            encoded[[unique.index(t) for t in texts + extra]] if len(unique) < len(texts) + len(extra) else encoded
        )
        if not extra:
            return vectors
        out, j = vectors[: len(texts)].copy(), len(texts)
        for i, r in enumerate(readings):
            if r:
                v = out[i] + vectors[j]
                out[i], j = v / np.linalg.norm(v), j + 1
        return out

    def _attack_model(self, library: AttackLibrary) -> AttackModel:
        # One fit per library and embedder in the process: an index swap does not re-encode it.
        key = (self._embedder.model_name, library)
        if key not in _MODELS:
            _MODELS[key] = AttackModel.fit(
                self.query_vectors(list(library.attacks), readings=False),
                self.query_vectors(list(library.benign), readings=False),
                library.regularization,
            )
        return _MODELS[key]

    def encode(
        self, text: str, library: AttackLibrary | None, query: str | None = None
    ) -> tuple[float | None, np.ndarray]:
        """The injection check's score of `text` (None without a library) and the search vector
        of `query` (default: the text itself), encoded in one batch."""
        parts = clauses(text) if library else []
        vectors = self._queries([*parts, query or text], plain=len(parts))
        score = self._attack_model(library).score(vectors[:-1]) if library else None
        return score, vectors[-1:]

    def passage(self, hit: Hit) -> Passage:
        return Passage(
            chunk_id=hit.chunk_id,
            source=hit.source,
            heading=hit.heading,
            text=hit.text,
            score=float(scale(hit.score, self._embedder.floor)),
        )

    def attack_score(self, text: str, library: AttackLibrary) -> float | None:
        """The injection check's score of `text` (samvad.guardrails.attack_model), or None."""
        return self.encode(text, library)[0] if text.strip() else None


class Retriever(QueryEncoder):
    """An index folder: FAISS in this process."""

    def __init__(self, index_dir: Path, embedder: Embedder) -> None:
        index_dir = Path(index_dir)
        self.manifest = read_manifest(index_dir)
        if self.manifest.embedding_model != embedder.model_name or self.manifest.dimension != embedder.dimension:
            raise IndexInvalidError(
                f"index {index_dir} was built with {self.manifest.embedding_model} "
                f"({self.manifest.dimension} dims); this service embeds with {embedder.model_name} "
                f"({embedder.dimension} dims): rebuild the index"
            )
        try:
            self._index = faiss.read_index(str(index_dir / FAISS_FILE))
            if "efSearch" in self.manifest.index_params:
                # read_index returns the concrete class (IndexHNSWFlat here); its stubs say Index
                self._index.hnsw.efSearch = self.manifest.index_params["efSearch"]  # type: ignore[attr-defined]
            with open(index_dir / CHUNKS_FILE, encoding="utf-8") as f:
                self._chunks = [json.loads(line) for line in f]
        except (RuntimeError, OSError, ValueError) as exc:
            raise IndexInvalidError(f"index files in {index_dir} are unreadable: {exc}") from None
        if self._index.ntotal != len(self._chunks) or self._index.ntotal != self.manifest.chunks:
            raise IndexInvalidError(
                f"index {index_dir} is inconsistent: {self._index.ntotal} vectors, "
                f"{len(self._chunks)} chunks, manifest says {self.manifest.chunks}"
            )
        self.index_dir = index_dir
        super().__init__(embedder)

    def search(self, query: str, k: int) -> list[Passage]:
        if not query.strip() or self._index.ntotal == 0:
            return []
        return self._search(self._queries([query]), k)

    def _search(self, vector: np.ndarray, k: int) -> list[Passage]:
        return [self.passage(h) for h in faiss_hits(self._index, self._chunks, vector, min(k, self._index.ntotal))]

    async def asearch(self, query: str, k: int) -> list[Passage]:
        return await asyncio.to_thread(self.search, query, k)

    def lookup(
        self, text: str, library: AttackLibrary | None, k: int, query: str | None = None
    ) -> tuple[float | None, list[Passage]]:
        """The injection check's score of `text` (None without a library) and the search for
        `query` (default: the text itself), encoded in one batch (one call on the turn path)."""
        if not text.strip():
            return None, []
        score, vector = self.encode(text, library, query)
        if k <= 0 or not self._index.ntotal:
            return score, []
        return score, self._search(vector, k)

    async def alookup(
        self,
        text: str,
        library: AttackLibrary | None,
        k: int,
        query: str | None = None,
        knowledge_base: str | None = None,
    ) -> tuple[float | None, list[Passage]]:
        _only_default(knowledge_base)
        return await asyncio.to_thread(self.lookup, text, library, k, query)

    async def aattack_score(self, text: str, library: AttackLibrary) -> float | None:
        return await asyncio.to_thread(self.attack_score, text, library)


def _only_default(knowledge_base: str | None) -> None:
    """One index answers for one knowledge base (the stage picks it): a turn that asks this one
    for another is refused rather than answered from the wrong documents."""
    if knowledge_base is not None:
        raise unavailable("index", f"knowledge base {knowledge_base!r} is not served here (one index in this process)")


QUERY_TIMEOUT_S = 5.0  # a store that does not answer fails the search rather than the turn hanging


class StoreRetriever(QueryEncoder):
    """A version loaded into a vector store (rag_index/stores/): the query is encoded here, the
    nearest chunks come from the store, behind a circuit breaker so a store that keeps failing
    is not waited on by every turn (the turn answers with its fallback reply at once)."""

    def __init__(self, store: VectorStore, info: StoreInfo, embedder: Embedder, breaker: CircuitBreaker) -> None:
        if info.embedder != embedder.model_name or info.dimension != embedder.dimension:
            raise IndexInvalidError(
                f"{store.name} version {info.version} holds {info.embedder} vectors ({info.dimension} dims); "
                f"this service embeds with {embedder.model_name}: publish a version built with it"
            )
        super().__init__(embedder)
        self.store, self.info, self.breaker = store, info, breaker

    async def alookup(
        self,
        text: str,
        library: AttackLibrary | None,
        k: int,
        query: str | None = None,
        knowledge_base: str | None = None,
    ) -> tuple[float | None, list[Passage]]:
        _only_default(knowledge_base)
        if not text.strip():
            return None, []
        score, vector = await asyncio.to_thread(self.encode, text, library, query)
        if k <= 0:
            return score, []
        name = self.store.name
        if not self.breaker.allow():
            metrics.inc("samvad_retrieval_failures_total", store=name, reason="circuit_open")
            raise unavailable(name, f"the {name} index is unavailable (circuit open after repeated failures)")
        try:
            hits = await asyncio.wait_for(self.store.query(self.info.version, vector, k), QUERY_TIMEOUT_S)
        except (StoreDown, TimeoutError) as exc:
            self.breaker.failure()
            metrics.inc("samvad_retrieval_failures_total", store=name, reason=type(exc).__name__)
            metrics.circuit("retrieval", name, self.breaker.state)
            raise unavailable(name, f"the {name} index is unreachable ({type(exc).__name__})") from None
        if self.breaker.failures or self.breaker.opened_at is not None:
            self.breaker.success()
            metrics.circuit("retrieval", name, "closed")
        return score, [self.passage(h) for h in hits]

    async def asearch(self, query: str, k: int) -> list[Passage]:
        return (await self.alookup(query, None, k))[1]

    async def aattack_score(self, text: str, library: AttackLibrary) -> float | None:
        return await asyncio.to_thread(self.attack_score, text, library)
