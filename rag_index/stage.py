"""The retrieval stage service wrapped by the Retriever deployment, with hot swap.

Every `reload_interval_s` a search checks where the live pointer (`rag.index_dir`, a symlink
moved by `samvad index publish`; with a shared `rag.store`, the store's own pointer that
`samvad index publish --store <store>` moves) resolves to. When it moved, the new version is loaded in a
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
from rag_index.retriever import Retriever, StoreRetriever
from rag_index.stores import open_store
from rag_index.stores.base import StoreDown, VectorStore, unavailable
from samvad.contracts import Passage
from samvad.embeddings import get_embedder
from samvad.errors import SamvadError
from samvad.guardrails.policy import Guardrails
from samvad.providers.breaker import CircuitBreaker
from samvad.settings import DEFAULT_KB, ConfigError, Settings

if TYPE_CHECKING:
    from samvad.providers.stub.engines import StubRetriever

log = logging.getLogger("samvad.retrieval")
R = TypeVar("R", Retriever, StoreRetriever)


class _Live:
    """One knowledge base's live version: its pointer, what it points at, and its searcher."""

    def __init__(self, name: str | None, pointer: Path | None, remote: str | None) -> None:
        self.name = name  # None: the default knowledge base
        self.pointer, self.remote = pointer, remote  # a FAISS pointer, or a shared store's name
        self.version: str | None = None
        self.retriever: Retriever | StoreRetriever | None = None
        self.last_error: str | None = None
        self.store: VectorStore | None = None
        self.reloading: asyncio.Task[Any] | None = None

    @property
    def label(self) -> str:
        return self.name or DEFAULT_KB


class RetrievalStage:
    """The Retriever deployment's service: the injection check and the search over the live
    index version of each knowledge base, switched without a restart when another version is
    published (the folder pointer for FAISS, the store's live pointer for the others)."""

    def __init__(self, s: Settings) -> None:
        self._interval = s.rag.reload_interval_s
        self._checked = time.monotonic()
        self._settings = s
        self._breaker = CircuitBreaker(s.providers.breaker_failures, s.providers.breaker_cooldown_s)
        self._stub: StubRetriever | None = None
        self._bases: dict[str | None, _Live] = {}
        if s.rag.retriever == "stub":
            from samvad.providers.stub.engines import StubRetriever

            self._stub = StubRetriever()
            self._library = None
            return
        self._embedder = get_embedder(s.embeddings)
        # The injection check's classifier is fitted before the first turn needs it: lazily, the
        # first caller after a start waited for the library's encodings (~280 e5 encodings, ~3 s;
        # with ~70 phrases it was already the slowest turn of the latency bench).
        self._library = Guardrails.from_file(s.guardrails_file).input.injection.attack_library
        remote = None if s.rag.store == "faiss" else s.rag.store
        if remote == "pgvector" and not s.database_url:
            raise ConfigError("rag.store pgvector needs database_url (the PostgreSQL that holds the index)")
        for name in [None, *s.rag.knowledge_bases]:
            self._bases[name] = _Live(name, None if remote else s.rag.pointer(name), remote)
        default = self._bases[None]
        if default.pointer is not None:  # FAISS: the default index is built on first start
            ensure_index(s, self._embedder)
        for live in self._bases.values():  # a shared store connects on first use
            if live.pointer is not None and live.pointer.exists():
                target = os.path.realpath(live.pointer)
                live.retriever, live.version = self._warm(Retriever(Path(target), self._embedder)), target
            elif live.pointer is not None:
                live.last_error = f"nothing published: run samvad index publish --kb {live.label}"

    def _warm(self, retriever: R) -> R:
        if self._library is not None:
            retriever.attack_score("warm-up", self._library)
        return retriever

    async def _current(self, knowledge_base: str | None = None) -> Retriever | StoreRetriever | StubRetriever:
        if self._stub is not None:
            return self._stub
        live = self._bases.get(knowledge_base)
        if live is None:  # a name this replica does not serve: never another one's documents
            raise unavailable(knowledge_base or DEFAULT_KB, f"knowledge base {knowledge_base!r} is not served here")
        self._maybe_reload()
        if live.retriever is None:  # a shared store's first call, or nothing published yet
            await self._reload(live)
            if live.retriever is None:
                name = live.remote or "index"
                raise unavailable(name, live.last_error or f"no live {name} index version for {live.label}")
        return live.retriever

    async def search(self, query: str, k: int, knowledge_base: str | None = None) -> list[Passage]:
        return await (await self._current(knowledge_base)).asearch(query, k)

    async def lookup(
        self, text: str, check: bool, k: int, query: str | None = None, knowledge_base: str | None = None
    ) -> tuple[float | None, list[Passage]]:
        """The attack check's score (with `check`, against the configured library) and the search
        in one call (the turn path's only Retriever hop), in the knowledge base asked for."""
        retriever = await self._current(knowledge_base)
        return await retriever.alookup(text, self._library if check else None, k, query)

    @staticmethod
    def parts(s: Settings) -> dict[str, Any]:
        """The constructor's arguments (its index and embedder are built from `rag` settings)."""
        return {"s": s}

    def status(self) -> dict[str, Any]:
        """The default knowledge base's version and last refusal (and each one's, if several)."""
        default = self._bases.get(None)
        status: dict[str, Any] = {
            "version": default and default.version,
            "last_error": default and default.last_error,
        }
        if len(self._bases) > 1:
            status["knowledge_bases"] = {
                live.label: {"version": live.version, "last_error": live.last_error} for live in self._bases.values()
            }
        return status

    def _maybe_reload(self) -> None:
        if time.monotonic() - self._checked < self._interval:
            return
        self._checked = time.monotonic()
        for live in self._bases.values():
            if live.reloading is None or live.reloading.done():
                live.reloading = asyncio.get_running_loop().create_task(self._reload(live))

    async def reload_now(self) -> dict[str, Any]:
        """Check every pointer at once (tests, ops) and wait for the switches."""
        for live in self._bases.values():
            await self._reload(live)
        return self.status()

    async def _reload(self, live: _Live) -> None:
        if live.remote is not None:
            await self._reload_store(live, live.remote)
        elif live.pointer is not None and live.pointer.exists():
            target = os.path.realpath(live.pointer)
            if target != live.version:
                await self._reload_folder(live, target)

    async def _reload_folder(self, live: _Live, target: str) -> None:
        try:
            fresh = await asyncio.to_thread(lambda: self._warm(Retriever(Path(target), self._embedder)))
        except SamvadError as exc:
            self._refused(live, target, exc.message)
            return
        live.retriever, live.version, live.last_error = fresh, target, None
        log.info("index %s switched to %s (%d chunks)", live.label, target, fresh.manifest.chunks)

    async def _reload_store(self, live: _Live, name: str) -> None:
        publish = f"samvad index publish --store {name}" + (f" --kb {live.name}" if live.name else "")
        try:
            if live.store is None:
                live.store = await asyncio.wait_for(open_store(self._settings, name, live.name), 10.0)
            store = live.store
            version = await asyncio.wait_for(store.live(), 10.0)
            if version is None:
                self._refused(live, name, f"no live {name} index version for {live.label}: run {publish}")
                return
            if version == live.version:
                return
            info = await store.describe(version)
            fresh = await asyncio.to_thread(
                lambda: self._warm(StoreRetriever(store, info, self._embedder, self._breaker))
            )
        except SamvadError as exc:
            self._refused(live, name, exc.message)
            return
        except (StoreDown, TimeoutError, LookupError) as exc:
            self._refused(live, name, f"the {name} index is unreachable ({type(exc).__name__}: {exc})")
            return
        live.retriever, live.version, live.last_error = fresh, version, None
        log.info("index %s switched to %s %s (%d chunks)", live.label, name, version, info.chunks)

    def _refused(self, live: _Live, target: str, message: str) -> None:
        if live.last_error != message:
            log.error("index %s: %s refused, keeping %s: %s", live.label, target, live.version, message)
        live.last_error = message
