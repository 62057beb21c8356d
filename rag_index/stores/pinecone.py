"""Pinecone: index versions as namespaces of one serverless index, over its REST data plane.

A version's chunks are records of namespace `<prefix>-<version>` (id: the chunk's position;
metadata: source, heading, text and the document's content hash). Namespace `<prefix>-meta`
holds one record per version (embedder, dimension, chunks) and the `live` record, whose
metadata names the live version: `publish` is one upsert of that record, so a query sees the
old version or the new one. An update copies unchanged documents' records from the previous
version (read back with fetch-by-metadata on their content hashes) and sends only the changed
documents' from the folder: Pinecone has no server-side copy, so the unchanged records pass
through this process, but nothing is embedded again.

Calls go through `samvad.providers.http.HttpProvider`: timeouts, retries honouring
`retry-after`, Pinecone's error bodies turned into `ProviderError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from rag_index.stores.base import Folder, Hit, StoreDown, StoreInfo, answering, batches, version_name
from samvad.errors import ProviderError
from samvad.providers.base import CallRecord
from samvad.providers.http import HttpProvider
from samvad.providers.pinecone.config import PineconeSettings

FETCH_LIMIT = 1000  # records per fetch-by-metadata page
IN_VALUES = 1000  # values per `$in` filter (Pinecone allows 10,000)
LIVE = "live"


def parse_error(body: Any) -> tuple[str, str | None, str | None]:
    """Control-plane errors are {"error": {"code", "message"}}; data-plane ones {"code": n, "message"}."""
    if isinstance(body.get("error"), dict):
        return body["error"].get("message", ""), body["error"].get("code"), None
    return str(body.get("message", "")), None, None


class PineconeStore:
    name = "pinecone"

    def __init__(self, settings: PineconeSettings, knowledge_base: str | None = None) -> None:
        if not settings.base_url:
            raise ValueError("providers.pinecone.base_url: set it to the index's host (see the README)")
        if settings.api_key is None:
            raise ValueError("providers.pinecone.api_key: set SAMVAD_PINECONE_API_KEY")
        self.s = settings
        auth = {
            "Api-Key": settings.api_key.get_secret_value(),
            "X-Pinecone-Api-Version": settings.api_version,
        }
        self._http = HttpProvider("pinecone", "retrieval", settings, auth, parse_error)
        self._dimension: int | None = None
        # The knowledge base's pointer record in the meta namespace: one per knowledge base.
        self._live = LIVE if knowledge_base is None else f"{LIVE}@{knowledge_base}"

    @classmethod
    async def connect(cls, settings: PineconeSettings, knowledge_base: str | None = None) -> PineconeStore:
        store = cls(settings, knowledge_base)
        await store.dimension()  # the key and the host answer, before the first turn needs them
        return store

    async def close(self) -> None:
        pass  # the HTTP client is shared per process (samvad.providers.http)

    def _namespace(self, version: str) -> str:
        return f"{self.s.namespace_prefix}-{version}"

    @property
    def _meta(self) -> str:
        return f"{self.s.namespace_prefix}-meta"

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        async with answering():
            response = await self._http.request(CallRecord(), "POST", path, json=body)
        return response.json() if response.content else {}

    async def dimension(self) -> int:
        if self._dimension is None:
            stats = await self._post("/describe_index_stats", {})
            self._dimension = int(stats["dimension"])
        return self._dimension

    async def _marker(self) -> list[float]:
        """The vector meta records carry (Pinecone refuses an all-zero dense vector)."""
        return [1.0] + [0.0] * (await self.dimension() - 1)

    async def _fetch_meta(self, record_id: str) -> dict[str, Any] | None:
        async with answering():
            response = await self._http.request(
                CallRecord(), "GET", "/vectors/fetch", params={"ids": [record_id], "namespace": self._meta}
            )
        record = response.json().get("vectors", {}).get(record_id)
        return None if record is None else dict(record.get("metadata") or {})

    async def _meta_is(self, record_id: str, metadata: dict[str, Any]) -> bool:
        return await self._fetch_meta(record_id) == metadata

    async def _upsert(self, namespace: str, records: list[dict[str, Any]]) -> None:
        for batch in batches(records, self.s.upsert_records, self.s.upsert_bytes):
            await self._post("/vectors/upsert", {"vectors": batch, "namespace": namespace})

    async def _records(self, namespace: str, filter: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        token: str | None = None
        while True:
            body: dict[str, Any] = {"namespace": namespace, "filter": filter, "limit": FETCH_LIMIT}
            if token:
                body["paginationToken"] = token
            page = await self._post("/vectors/fetch_by_metadata", body)
            for record in page.get("vectors", {}).values():
                yield record
            token = (page.get("pagination") or {}).get("next")
            if not token:
                return

    async def load(self, index_dir: Path, version: str | None = None, previous: str | None = None) -> StoreInfo:
        version = version_name(version, index_dir)
        if previous == version:
            raise ValueError(f"{version} is already loaded: load another folder, or publish {version}")
        folder = Folder.read(index_dir)
        m = folder.manifest
        if m.dimension != await self.dimension():
            raise ValueError(
                f"the Pinecone index holds {await self.dimension()}-dim vectors; {index_dir} has {m.dimension}"
            )
        namespace = self._namespace(version)
        await self._post("/vectors/delete", {"namespace": namespace, "deleteAll": True})  # a reload starts clean
        copied: set[int] = set()
        if previous is not None:
            old = await self.describe(previous)
            if (old.embedder, old.dimension) != (m.embedding_model, m.dimension):
                raise ValueError(f"{previous} holds {old.embedder} vectors; load the whole folder instead")
            hashes = sorted(set(m.document_hashes.values()))
            stored: list[dict[str, Any]] = []
            for i in range(0, len(hashes), IN_VALUES):
                flt = {"doc_hash": {"$in": hashes[i : i + IN_VALUES]}}
                stored += [r async for r in self._records(self._namespace(previous), flt)]
            stored.sort(key=lambda r: int(r["id"]))  # stored order, so repeated passages keep theirs
            places = folder.place([(r["metadata"]["source"], r["metadata"]["text"]) for r in stored])
            moved = [
                {"id": str(at), "values": r["values"], "metadata": r["metadata"]}
                for r, at in zip(stored, places, strict=True)
                if at is not None
            ]
            await self._upsert(namespace, moved)
            copied = {int(r["id"]) for r in moved}
        fresh = [
            {
                "id": str(i),
                "values": folder.vectors[i].tolist(),
                "metadata": {
                    "source": c["source"],
                    "heading": c["heading"],
                    "text": c["text"],
                    "doc_hash": folder.doc_hash(i),
                },
            }
            for i, c in enumerate(folder.chunks)
            if i not in copied
        ]
        await self._upsert(namespace, fresh)
        await self._until(
            lambda: self._counted(namespace, len(folder.chunks)), f"{len(folder.chunks)} records of {version}"
        )
        meta = {
            "kind": "version",
            "version": version,
            "embedder": m.embedding_model,
            "dimension": m.dimension,
            "chunks": len(folder.chunks),
            "loaded_at": time.time(),
        }
        await self._upsert(self._meta, [{"id": f"version:{version}", "values": await self._marker(), "metadata": meta}])
        await self._until(lambda: self._meta_is(f"version:{version}", meta), f"the description of {version}")
        return StoreInfo(
            store=self.name,
            version=version,
            embedder=m.embedding_model,
            dimension=m.dimension,
            chunks=len(folder.chunks),
            sent=len(fresh),
            copied=len(copied),
        )

    async def _until(self, done: Callable[[], Awaitable[bool]], what: str, wait_s: float = 120.0) -> None:
        """Pinecone is eventually consistent: a write counts once it can be read back, so a
        version is live (and fully searchable) by the time `load` and `publish` return."""
        deadline = time.monotonic() + wait_s
        while not await done():
            if time.monotonic() > deadline:
                raise StoreDown(f"pinecone: {what} not readable after {wait_s:.0f} s")
            await asyncio.sleep(0.5)

    async def _counted(self, namespace: str, count: int) -> bool:
        stats = await self._post("/describe_index_stats", {})
        return int(stats.get("namespaces", {}).get(namespace, {}).get("vectorCount", 0)) >= count

    async def describe(self, version: str) -> StoreInfo:
        meta = await self._fetch_meta(f"version:{version}")
        if meta is None:
            raise LookupError(f"no Pinecone index version {version!r}")
        return StoreInfo(
            store=self.name,
            version=version,
            embedder=str(meta["embedder"]),
            dimension=int(meta["dimension"]),
            chunks=int(meta["chunks"]),
        )

    async def publish(self, version: str) -> str | None:
        await self.describe(version)  # refuse a version that is not loaded
        before = await self.live()
        pointer = {"kind": "live", "version": version}
        await self._upsert(self._meta, [{"id": self._live, "values": await self._marker(), "metadata": pointer}])
        await self._until(lambda: self._meta_is(self._live, pointer), f"the live pointer to {version}")
        return before

    async def live(self) -> str | None:
        meta = await self._fetch_meta(self._live)
        return None if meta is None else str(meta["version"])

    async def query(self, version: str, vector: np.ndarray, k: int) -> list[Hit]:
        body = {
            "namespace": self._namespace(version),
            "vector": np.asarray(vector, dtype=np.float32).reshape(-1).tolist(),
            "topK": k,
            "includeMetadata": True,
            "includeValues": False,
        }
        matches = (await self._post("/query", body)).get("matches", [])
        return [
            Hit(int(m["id"]), m["metadata"]["source"], m["metadata"]["heading"], m["metadata"]["text"], m["score"])
            for m in matches
        ]

    async def delete_documents(self, version: str, sources: list[str]) -> int:
        """Delete by metadata filter; Pinecone does not say how many records that removed."""
        namespace = self._namespace(version)
        for i in range(0, len(sources), IN_VALUES):
            await self._post(
                "/vectors/delete", {"namespace": namespace, "filter": {"source": {"$in": sources[i : i + IN_VALUES]}}}
            )
        return len(sources)

    async def drop(self, version: str) -> None:
        # Live for any knowledge base: a pointer record of any of them naming the version counts.
        async for _ in self._records(self._meta, {"kind": {"$eq": "live"}, "version": {"$eq": version}}):
            raise ValueError(f"{version} is live: publish another version first")
        async with answering():
            try:
                await self._http.request(CallRecord(), "DELETE", f"/namespaces/{self._namespace(version)}")
            except ProviderError as exc:
                if exc.provider_status != 404:
                    raise
        await self._post("/vectors/delete", {"namespace": self._meta, "ids": [f"version:{version}"]})
