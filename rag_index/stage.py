"""The retrieval stage service wrapped by the Retriever deployment, with hot swap.

Every `reload_interval_s` a search checks where the live pointer (`rag.index_dir`, a symlink
moved by `samvad index publish`; with `rag.store: pgvector`, the live row that `samvad index
publish --store pgvector` moves) resolves to. When it moved, the new version is loaded in a
worker thread next to the old one while searches keep using the old; then one reference
assignment switches over and the old index is freed once its last search returns. A version
that fails to load (corrupt files, another embedding model) is refused and the old stays live.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rag_index.build import ensure_index
from rag_index.retriever import PgVectorRetriever, Retriever
from rag_index.stores.pgvector import DOWN, PgVectorStore, unavailable
from samvad.contracts import Passage
from samvad.embeddings import get_embedder
from samvad.errors import SamvadError
from samvad.guardrails.policy import Guardrails
from samvad.settings import ConfigError, Settings

if TYPE_CHECKING:
    from samvad.providers.stub import StubRetriever

log = logging.getLogger("samvad.retrieval")
R = TypeVar("R", Retriever, PgVectorRetriever)


class RetrievalStage:
    """The Retriever deployment's service: the injection check and the search over the live
    index version, switched without a restart when another version is published (the folder
    pointer for FAISS, the live row for pgvector)."""

    def __init__(self, s: Settings) -> None:
        self._interval = s.rag.reload_interval_s
        self.last_error: str | None = None
        self._checked = time.monotonic()
        self._reloading: asyncio.Task[Any] | None = None
        self._live: Path | None = None
        self._dsn: str | None = None
        self._store: PgVectorStore | None = None
        if s.rag.retriever == "stub":
            from samvad.providers.stub import StubRetriever

            self.retriever: Retriever | PgVectorRetriever | StubRetriever | None = StubRetriever()
            self._library = None
            return
        self._embedder = get_embedder(s.embeddings)
        # The injection check's classifier is fitted before the first turn needs it: lazily, the
        # first caller after a start waited for the library's encodings (~280 e5 encodings, ~3 s;
        # with ~70 phrases it was already the slowest turn of the latency bench).
        self._library = Guardrails.from_file(s.guardrails_file).input.injection.attack_library
        if s.rag.store == "pgvector":
            if not s.database_url:
                raise ConfigError("rag.store pgvector needs database_url (the PostgreSQL that holds the index)")
            self._dsn, self.retriever, self.version = s.database_url, None, None  # connected on first use
            return
        self._live = ensure_index(s, self._embedder)
        self.version = os.path.realpath(self._live)
        self.retriever = self._warm(Retriever(Path(self.version), self._embedder))

    def _warm(self, retriever: R) -> R:
        if self._library is not None:
            retriever.attack_score("warm-up", self._library)
        return retriever

    async def _current(self) -> Retriever | PgVectorRetriever | StubRetriever:
        self._maybe_reload()
        if self.retriever is None:  # pgvector, first call: connect and take the live version
            await self.reload_now()
            if self.retriever is None:
                raise unavailable(self.last_error or "no live pgvector index version")
        return self.retriever

    async def search(self, query: str, k: int) -> list[Passage]:
        return await (await self._current()).asearch(query, k)

    async def lookup(
        self, text: str, check: bool, k: int, query: str | None = None
    ) -> tuple[float | None, list[Passage]]:
        """The attack check's score (with `check`, against the configured library) and the search
        in one call (the turn path's only Retriever hop)."""
        retriever = await self._current()
        return await retriever.alookup(text, self._library if check else None, k, query)

    @staticmethod
    def parts(s: Settings) -> dict[str, Any]:
        """The constructor's arguments (its index and embedder are built from `rag` settings)."""
        return {"s": s}

    def status(self) -> dict[str, Any]:
        return {"version": getattr(self, "version", None), "last_error": getattr(self, "last_error", None)}

    def _maybe_reload(self) -> None:
        if (self._live is None and self._dsn is None) or time.monotonic() - self._checked < self._interval:
            return
        self._checked = time.monotonic()
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self.reload_now())

    async def reload_now(self) -> dict[str, Any]:
        """Check the pointer at once (tests, ops) and wait for the switch."""
        if self._dsn is not None:
            await self._reload_pgvector(self._dsn)
        elif self._live is not None:
            target = os.path.realpath(self._live)
            if target != self.version:
                await self._reload(target)
        return self.status()

    async def _reload(self, target: str) -> None:
        try:
            fresh = await asyncio.to_thread(lambda: self._warm(Retriever(Path(target), self._embedder)))
        except SamvadError as exc:
            self._refused(target, exc.message)
            return
        self.retriever, self.version, self.last_error = fresh, target, None
        log.info("index switched to %s (%d chunks)", target, fresh.manifest.chunks)

    async def _reload_pgvector(self, dsn: str) -> None:
        try:
            if self._store is None:
                self._store = await PgVectorStore.connect(dsn)
            store = self._store
            version = await store.live()
            if version is None:
                self._refused("pgvector", "no live pgvector index version: run samvad index publish --store pgvector")
                return
            if version == self.version:
                return
            info = await store.describe(version)
            fresh = await asyncio.to_thread(lambda: self._warm(PgVectorRetriever(store, info, self._embedder)))
        except SamvadError as exc:
            self._refused("pgvector", exc.message)
            return
        except (*DOWN, LookupError) as exc:
            self._refused("pgvector", f"the index database is unreachable ({type(exc).__name__})")
            return
        self.retriever, self.version, self.last_error = fresh, version, None
        log.info("index switched to pgvector %s (%d chunks)", version, info.chunks)

    def _refused(self, target: str, message: str) -> None:
        if self.last_error != message:
            log.error("index %s refused, keeping %s: %s", target, getattr(self, "version", None), message)
        self.last_error = message
