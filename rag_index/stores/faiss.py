"""FAISS, the default store, behind the same interface as the shared ones: a version is a built
index folder, found by name under `<live>/../versions/` (a folder built elsewhere is linked
there when loaded), the live pointer is the `rag.index_dir` symlink, and a search runs in this
process. The serving path keeps its own `Retriever` (rag_index/retriever.py), which loads the
folder once per replica and swaps it on publish; this class is what the CLI and the benchmarks
use to treat every store alike."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import faiss
import numpy as np

from rag_index.build import CHUNKS_FILE, FAISS_FILE, publish, read_manifest
from rag_index.stores.base import Hit, StoreInfo, faiss_hits, is_version_name, version_name


class FaissStore:
    name = "faiss"

    def __init__(self, live: Path) -> None:
        self._live = Path(live)
        self._versions = self._live.parent / "versions"
        self._open: dict[str, tuple[faiss.Index, list[dict[str, str]]]] = {}

    def _folder(self, version: str) -> Path:
        folder = self._versions / version
        if not is_version_name(version) or not (folder / "manifest.json").is_file():
            raise LookupError(f"no FAISS index version {version!r} in {self._versions}")
        return folder

    async def load(self, index_dir: Path, version: str | None = None, previous: str | None = None) -> StoreInfo:
        """The folder is the version: nothing is sent, it is only named (linked under versions/)."""
        version = version_name(version, index_dir)
        target = self._versions / version
        if target.resolve() != Path(index_dir).resolve():
            self._versions.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            elif target.exists():
                raise ValueError(f"{target} is another index folder: load under another version name")
            os.symlink(Path(index_dir).resolve(), target)
        return (await self.describe(version)).model_copy(update={"sent": 0, "copied": 0})

    async def publish(self, version: str) -> str | None:
        previous = publish(self._folder(version), self._live)
        return None if previous is None else previous.name

    async def live(self) -> str | None:
        return self._live.resolve().name if self._live.is_symlink() else None

    async def describe(self, version: str) -> StoreInfo:
        m = read_manifest(self._folder(version))
        return StoreInfo(
            store=self.name, version=version, embedder=m.embedding_model, dimension=m.dimension, chunks=m.chunks
        )

    async def query(self, version: str, vector: np.ndarray, k: int) -> list[Hit]:
        if version not in self._open:
            folder = self._folder(version)
            index = faiss.read_index(str(folder / FAISS_FILE))
            if ef := read_manifest(folder).index_params.get("efSearch"):
                index.hnsw.efSearch = ef  # type: ignore[attr-defined]
            with open(folder / CHUNKS_FILE, encoding="utf-8") as f:
                self._open[version] = (index, [json.loads(line) for line in f])
        index, chunks = self._open[version]
        return await asyncio.to_thread(faiss_hits, index, chunks, vector, min(k, index.ntotal))

    async def delete_documents(self, version: str, sources: list[str]) -> int:
        raise ValueError("a FAISS version is an immutable folder: build an update without those documents")

    async def drop(self, version: str) -> None:
        if await self.live() == version:
            raise ValueError(f"{version} is live: publish another version first")
        folder = self._versions / version
        self._open.pop(version, None)
        if folder.is_symlink():
            folder.unlink()  # a folder built elsewhere stays where it was built
        else:
            shutil.rmtree(self._folder(version))

    async def close(self) -> None:
        self._open.clear()
