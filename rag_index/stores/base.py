"""What every vector store answers, whatever holds the vectors (the `VectorStore` interface), and
what loading a version into one shares: reading the built folder, and matching an unchanged
document's stored chunks to the new version's positions so only changed documents are sent.

An index version is always built by `samvad index build|update` into a folder (chunks, their
vectors, a manifest); a store holds versions loaded from such folders, so every store holds the
same embeddings and answers the same top-k for the same embedder.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import faiss
import numpy as np
from pydantic import BaseModel

from rag_index.build import CHUNKS_FILE, FAISS_FILE, Manifest, read_manifest
from samvad.errors import ProviderError


class Hit(NamedTuple):
    chunk_id: int  # the chunk's position in the index folder it was loaded from
    source: str
    heading: str
    text: str
    score: float  # cosine of the (normalised) query and chunk vectors


class StoreInfo(BaseModel):
    store: str
    version: str
    embedder: str
    dimension: int
    chunks: int
    sent: int | None = None  # chunks sent by the last load (an update sends only changed documents)
    copied: int | None = None  # chunks of unchanged documents reused from the previous version


class StoreDown(Exception):
    """The store cannot answer (unreachable, timing out, refusing): each adapter raises this
    for its own client's failures, so the retriever handles every store alike."""


class VectorStore(Protocol):
    name: str

    async def load(self, index_dir: Path, version: str | None = None, previous: str | None = None) -> StoreInfo:
        """The folder's chunks and vectors as `version` (default: the folder's name), not yet
        live. With `previous` (a loaded version of the same embedder), unchanged documents are
        taken from it and only the others are sent."""
        ...

    async def publish(self, version: str) -> str | None:
        """Make `version` the live one in one step (queries see the old or the new); returns
        the version it replaced."""
        ...

    async def live(self) -> str | None: ...
    async def describe(self, version: str) -> StoreInfo:
        """Raises LookupError for a version that is not loaded."""
        ...

    async def query(self, version: str, vector: np.ndarray, k: int) -> list[Hit]:
        """The `k` chunks nearest a normalised query vector, by cosine, best first."""
        ...

    async def delete_documents(self, version: str, sources: list[str]) -> int: ...
    async def drop(self, version: str) -> None:
        """Remove a version that is not live."""
        ...

    async def close(self) -> None: ...


@asynccontextmanager
async def answering() -> AsyncIterator[None]:
    """A hosted store's HTTP failures (samvad.providers.http's ProviderError) as `StoreDown`,
    except a request it refused as malformed: that is a bug or a bad setting, not an outage."""
    try:
        yield
    except ProviderError as exc:
        if (s := exc.provider_status) is not None and 400 <= s < 500 and s not in (401, 403, 408, 429):
            raise
        raise StoreDown(exc.message) from exc


def unavailable(store: str, message: str) -> ProviderError:
    """The search cannot run: the turn fails over to its fallback reply rather than hanging."""
    return ProviderError(message, provider=store, stage="retrieval", retryable=True, code="retrieval_unavailable")


def version_of(index_dir: Path) -> str:
    """The version name of an index folder: its name, as every store can hold it."""
    return re.sub(r"[^A-Za-z0-9_]", "_", Path(index_dir).resolve().name)[-50:]


def is_version_name(name: str) -> bool:
    """A name every store can hold as it is: never a path (no "..", no leading dot), at most 80
    characters of letters, digits, _ . -"""
    return bool(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}", name)) and ".." not in name


def version_name(version: str | None, index_dir: Path) -> str:
    """The version a load names (default: the folder's), refused unless `is_version_name`."""
    name = version or version_of(index_dir)
    if not is_version_name(name):
        raise ValueError(f"not an index version name: {name!r} (letters, digits, _ . -)")
    return name


@dataclass
class Folder:
    """A built index version as a store loads it."""

    manifest: Manifest
    chunks: list[dict[str, str]]  # source, heading, text (and offsets), in vector order
    vectors: np.ndarray  # float32, normalised, one row per chunk

    @classmethod
    def read(cls, index_dir: Path) -> Folder:
        manifest = read_manifest(index_dir)
        index = faiss.read_index(str(Path(index_dir) / FAISS_FILE))
        with open(Path(index_dir) / CHUNKS_FILE, encoding="utf-8") as f:
            chunks = [json.loads(line) for line in f]
        return cls(manifest, chunks, index.reconstruct_n(0, index.ntotal))

    def doc_hash(self, position: int) -> str:
        return self.manifest.document_hashes.get(self.chunks[position]["source"], "")

    def unchanged(self, old_hashes: dict[str, str]) -> set[str]:
        """Documents whose content hash is the same in the previous version."""
        return {d for d, h in self.manifest.document_hashes.items() if old_hashes.get(d) == h}

    def place(self, stored: list[tuple[str, str]]) -> list[int | None]:
        """For each stored chunk of an unchanged document, as (source, text) in stored order,
        its position in this version (None: no longer there). A document may repeat a passage,
        so equal texts are matched in order."""
        slots: dict[tuple[str, str], list[int]] = {}
        for i, c in enumerate(self.chunks):
            slots.setdefault((c["source"], c["text"]), []).append(i)
        return [free.pop(0) if (free := slots.get(key)) else None for key in stored]


def batches(items: list[dict[str, object]], max_items: int, max_bytes: int) -> list[list[dict[str, object]]]:
    """Split request items so each batch stays within a vendor's count and body-size limits."""
    out: list[list[dict[str, object]]] = []
    current: list[dict[str, object]] = []
    size = 0
    for item in items:
        n = len(json.dumps(item, ensure_ascii=False).encode()) + 1
        if current and (len(current) >= max_items or size + n > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += n
    if current:
        out.append(current)
    return out


def faiss_hits(index: object, chunks: list[dict[str, str]], vector: np.ndarray, k: int) -> list[Hit]:
    """The FAISS index's answer in the stores' shape (the index and its chunks, in vector order)."""
    scores, ids = index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), k)  # type: ignore[attr-defined]
    return [
        Hit(int(i), chunks[i]["source"], chunks[i]["heading"], chunks[i]["text"], float(s))
        for s, i in zip(scores[0], ids[0], strict=True)
        if i >= 0
    ]


async def load_and_publish(store: VectorStore, index_dir: Path) -> tuple[StoreInfo, str | None]:
    """Load an index folder as a new version (sending only documents changed since the live
    version, when that was built with the same embedder) and make it live; returns what it
    replaced. A folder loaded before (not live) is published as it is."""
    manifest = read_manifest(index_dir)
    version = version_of(index_dir)
    live = await store.live()
    if live == version:
        return await store.describe(live), live  # this folder is live already
    try:
        info = await store.describe(version)
        if (info.embedder, info.chunks) != (manifest.embedding_model, manifest.chunks):
            raise LookupError(version)  # a stale load under this name: load it again
    except LookupError:
        previous = None
        if live is not None and (await store.describe(live)).embedder == manifest.embedding_model:
            previous = live
        info = await store.load(index_dir, previous=previous)
    return info, await store.publish(info.version)


async def load_update(store: VectorStore, index_dir: Path) -> StoreInfo:
    """Load a folder as a version that is not live yet, from the live one when it can."""
    manifest = read_manifest(index_dir)
    live = await store.live()
    previous = None
    if live is not None and live != version_of(index_dir):
        if (await store.describe(live)).embedder == manifest.embedding_model:
            previous = live
    return await store.load(index_dir, previous=previous)


async def ensure_live(store: VectorStore, index_dir: Path) -> str:
    """A live version: the folder loaded and published when there is none yet (first start)."""
    live = await store.live()
    if live is None:
        info, _ = await load_and_publish(store, index_dir)
        return info.version
    return live
