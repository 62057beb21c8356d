"""The retrieval stage service wrapped by the Retriever deployment, with hot swap.

Every `reload_interval_s` a search checks where the live pointer (`rag.index_dir`, a symlink
moved by `samvad index publish`) resolves to. When it moved, the new version is loaded in a
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
from typing import TYPE_CHECKING, Any

from rag_index.build import ensure_index
from rag_index.retriever import Retriever
from samvad.contracts import Passage
from samvad.embeddings import get_embedder
from samvad.errors import SamvadError
from samvad.guardrails.policy import Guardrails
from samvad.settings import Settings

if TYPE_CHECKING:
    from samvad.providers.stub import StubRetriever

log = logging.getLogger("samvad.retrieval")


class RetrievalStage:
    def __init__(self, s: Settings) -> None:
        self._interval = s.rag.reload_interval_s
        if s.rag.retriever == "stub":
            from samvad.providers.stub import StubRetriever

            self.retriever: Retriever | StubRetriever = StubRetriever()
            self._live, self._library = None, None
            return
        self._embedder = get_embedder(s.embeddings)
        self._live = ensure_index(s, self._embedder)
        self.version = os.path.realpath(self._live)
        # The injection check's classifier is fitted before the first turn needs it: lazily, the
        # first caller after a start waited for the library's encodings (~280 e5 encodings, ~3 s;
        # with ~70 phrases it was already the slowest turn of the latency bench).
        self._library = Guardrails.from_file(s.guardrails_file).input.injection.attack_library
        self.retriever = self._warm(Retriever(Path(self.version), self._embedder))
        self.last_error: str | None = None
        self._checked = time.monotonic()
        self._reloading: asyncio.Task[None] | None = None

    def _warm(self, retriever: Retriever) -> Retriever:
        if self._library is not None:
            retriever.attack_score("warm-up", self._library)
        return retriever

    async def search(self, query: str, k: int) -> list[Passage]:
        self._maybe_reload()
        return await self.retriever.asearch(query, k)

    async def lookup(
        self, text: str, check: bool, k: int, query: str | None = None
    ) -> tuple[float | None, list[Passage]]:
        """The attack check's score (with `check`, against the configured library) and the search
        in one call (the turn path's only Retriever hop)."""
        self._maybe_reload()
        return await self.retriever.alookup(text, self._library if check else None, k, query)

    @staticmethod
    def parts(s: Settings) -> dict[str, Any]:
        """The constructor's arguments (its index and embedder are built from `rag` settings)."""
        return {"s": s}

    def status(self) -> dict[str, Any]:
        return {"version": getattr(self, "version", None), "last_error": getattr(self, "last_error", None)}

    def _maybe_reload(self) -> None:
        if self._live is None or time.monotonic() - self._checked < self._interval:
            return
        self._checked = time.monotonic()
        target = os.path.realpath(self._live)
        if target != self.version and (self._reloading is None or self._reloading.done()):
            self._reloading = asyncio.get_running_loop().create_task(self._reload(target))

    async def reload_now(self) -> dict[str, Any]:
        """Check the pointer at once (tests, ops) and wait for the switch."""
        if self._live is None:
            return self.status()
        target = os.path.realpath(self._live)
        if target != self.version:
            await self._reload(target)
        return self.status()

    async def _reload(self, target: str) -> None:
        try:
            fresh = await asyncio.to_thread(lambda: self._warm(Retriever(Path(target), self._embedder)))
        except SamvadError as exc:
            if self.last_error != exc.message:
                log.error("index %s refused, keeping %s: %s", target, self.version, exc.message)
            self.last_error = exc.message
            return
        self.retriever, self.version, self.last_error = fresh, target, None
        log.info("index switched to %s (%d chunks)", target, fresh.manifest.chunks)
