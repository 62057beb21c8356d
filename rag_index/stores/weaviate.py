"""Weaviate: index versions as collections, the live one named by a collection alias, over
Weaviate's REST and GraphQL API (`/v1`), not the v4 client's gRPC protocol, so the adapter
shares the other providers' HTTP client, retries and error handling.

A version is collection `<prefix>_<version>` (vectors supplied by Samvad, `vectorizer: none`,
HNSW over cosine; its description holds the embedder, dimension and chunk count). The alias
`<prefix>Live` points at the live collection: `publish` moves it in one call (Weaviate 1.32+).
An update copies unchanged documents' objects, with their vectors, from the previous collection
and sends only the changed documents' from the folder; nothing is embedded again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from rag_index.stores.base import Folder, Hit, StoreDown, StoreInfo, answering, version_name
from samvad.errors import ProviderError
from samvad.providers.base import CallRecord
from samvad.providers.http import HttpProvider
from samvad.providers.weaviate.config import WeaviateSettings

PAGE = 500  # objects per page when reading a collection back
PROPERTIES = [
    {"name": "chunk", "dataType": ["int"]},
    {"name": "source", "dataType": ["text"], "tokenization": "field"},
    {"name": "heading", "dataType": ["text"]},
    {"name": "text", "dataType": ["text"]},
    {"name": "doc_hash", "dataType": ["text"], "tokenization": "field"},
]


def parse_error(body: Any) -> tuple[str, str | None, str | None]:
    """REST errors are {"error": [{"message"}]}; auth failures {"code": 401, "message"}."""
    if isinstance(body.get("error"), list) and body["error"]:
        return str(body["error"][0].get("message", "")), None, None
    return str(body.get("message", "")), None, None


class WeaviateStore:
    name = "weaviate"

    def __init__(self, settings: WeaviateSettings, knowledge_base: str | None = None) -> None:
        self.s = settings
        self._kb = knowledge_base
        auth = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"} if settings.api_key else {}
        self._http = HttpProvider("weaviate", "retrieval", settings, auth, parse_error)

    @classmethod
    async def connect(cls, settings: WeaviateSettings, knowledge_base: str | None = None) -> WeaviateStore:
        store = cls(settings, knowledge_base)
        await store._call("GET", "/v1/.well-known/ready")
        return store

    async def close(self) -> None:
        pass  # the HTTP client is shared per process (samvad.providers.http)

    def _collection(self, version: str) -> str:
        return f"{self.s.collection_prefix}_{version}"

    @property
    def _alias(self) -> str:
        # One alias per knowledge base (their names are class-name safe: samvad.settings).
        return f"{self.s.collection_prefix}Live" + ("" if self._kb is None else f"_{self._kb}")

    async def _call(self, method: str, path: str, body: Any = None, *, missing_ok: bool = False, **kw: Any) -> Any:
        async with answering():
            try:
                response = await self._http.request(CallRecord(), method, path, json=body, **kw)
            except ProviderError as exc:
                if missing_ok and exc.provider_status == 404:
                    return None
                raise
        return response.json() if response.content else {}

    async def _graphql(self, query: str) -> Any:
        answer = await self._call("POST", "/v1/graphql", {"query": query})
        if answer.get("errors"):
            raise StoreDown(f"weaviate graphql: {answer['errors'][0].get('message', '')}")
        return answer["data"]

    async def _import(self, name: str, objects: list[dict[str, Any]]) -> None:
        for i in range(0, len(objects), self.s.batch_objects):
            results = await self._call("POST", "/v1/batch/objects", {"objects": objects[i : i + self.s.batch_objects]})
            failed = [r for r in results if (r.get("result") or {}).get("errors")]
            if failed:
                message = failed[0]["result"]["errors"]["error"][0]["message"]
                raise ValueError(f"weaviate refused {len(failed)} objects of {name}: {message}")

    async def _objects(self, name: str) -> AsyncIterator[dict[str, Any]]:
        """Every object of a collection with its vector, by cursor."""
        after: str | None = None
        while True:
            params: dict[str, Any] = {"class": name, "limit": PAGE, "include": "vector"}
            if after:
                params["after"] = after
            page = (await self._call("GET", "/v1/objects", params=params))["objects"] or []
            for obj in page:
                yield obj
            if len(page) < PAGE:
                return
            after = page[-1]["id"]

    def _object(self, name: str, position: int, properties: dict[str, Any], vector: list[float]) -> dict[str, Any]:
        oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"samvad/{name}/{position}"))
        return {"class": name, "id": oid, "properties": {**properties, "chunk": position}, "vector": vector}

    async def load(self, index_dir: Path, version: str | None = None, previous: str | None = None) -> StoreInfo:
        version = version_name(version, index_dir)
        if previous == version:
            raise ValueError(f"{version} is already loaded: load another folder, or publish {version}")
        folder = Folder.read(index_dir)
        m = folder.manifest
        name = self._collection(version)
        if previous is not None:
            old = await self.describe(previous)
            if (old.embedder, old.dimension) != (m.embedding_model, m.dimension):
                raise ValueError(f"{previous} holds {old.embedder} vectors; load the whole folder instead")
        await self._call("DELETE", f"/v1/schema/{name}", missing_ok=True)  # a reload starts clean
        meta = {"embedder": m.embedding_model, "dimension": m.dimension, "chunks": len(folder.chunks)}
        await self._call(
            "POST",
            "/v1/schema",
            {
                "class": name,
                "description": json.dumps(meta),
                "vectorizer": "none",
                "vectorIndexType": "hnsw",
                "vectorIndexConfig": {"distance": "cosine", "ef": 64},
                "properties": PROPERTIES,
            },
        )
        copied: set[int] = set()
        if previous is not None:
            hashes = set(m.document_hashes.values())
            stored = [
                o async for o in self._objects(self._collection(previous)) if o["properties"]["doc_hash"] in hashes
            ]
            stored.sort(key=lambda o: int(o["properties"]["chunk"]))
            places = folder.place([(o["properties"]["source"], o["properties"]["text"]) for o in stored])
            moved = [
                self._object(
                    name, at, {k: o["properties"][k] for k in ("source", "heading", "text", "doc_hash")}, o["vector"]
                )
                for o, at in zip(stored, places, strict=True)
                if at is not None
            ]
            await self._import(name, moved)
            copied = {o["properties"]["chunk"] for o in moved}
        fresh = [
            self._object(
                name,
                i,
                {"source": c["source"], "heading": c["heading"], "text": c["text"], "doc_hash": folder.doc_hash(i)},
                folder.vectors[i].tolist(),
            )
            for i, c in enumerate(folder.chunks)
            if i not in copied
        ]
        await self._import(name, fresh)
        return StoreInfo(
            store=self.name,
            version=version,
            embedder=m.embedding_model,
            dimension=m.dimension,
            chunks=len(folder.chunks),
            sent=len(fresh),
            copied=len(copied),
        )

    async def describe(self, version: str) -> StoreInfo:
        name = self._collection(version)
        schema = await self._call("GET", f"/v1/schema/{name}", missing_ok=True)
        if schema is None:
            raise LookupError(f"no Weaviate index version {version!r}")
        meta = json.loads(schema.get("description") or "{}")
        count = (await self._graphql(f"{{ Aggregate {{ {name} {{ meta {{ count }} }} }} }}"))["Aggregate"][name][0]
        if count["meta"]["count"] != meta.get("chunks"):  # an import that did not finish
            raise LookupError(
                f"Weaviate index version {version!r} holds {count['meta']['count']} of {meta.get('chunks')} chunks"
            )
        return StoreInfo(
            store=self.name,
            version=version,
            embedder=meta["embedder"],
            dimension=meta["dimension"],
            chunks=meta["chunks"],
        )

    async def publish(self, version: str) -> str | None:
        await self.describe(version)  # refuse a version that is not (wholly) loaded
        before = await self.live()
        target = {"class": self._collection(version)}
        if before is None:
            await self._call("POST", "/v1/aliases", {"alias": self._alias, **target})
        else:
            await self._call("PUT", f"/v1/aliases/{self._alias}", target)
        return before

    async def live(self) -> str | None:
        alias = await self._call("GET", f"/v1/aliases/{self._alias}", missing_ok=True)
        if alias is None:
            return None
        return str(alias["class"]).removeprefix(f"{self.s.collection_prefix}_")

    async def query(self, version: str, vector: np.ndarray, k: int) -> list[Hit]:
        name = self._collection(version)
        values = ",".join(f"{x:.7g}" for x in np.asarray(vector, dtype=np.float32).reshape(-1).tolist())
        data = await self._graphql(
            f"{{ Get {{ {name}(nearVector: {{vector: [{values}]}}, limit: {int(k)}) "
            "{ chunk source heading text _additional { distance } } } }"
        )
        return [
            Hit(int(o["chunk"]), o["source"], o["heading"], o["text"], 1.0 - float(o["_additional"]["distance"]))
            for o in data["Get"][name] or []
        ]

    async def delete_documents(self, version: str, sources: list[str]) -> int:
        where = {"path": ["source"], "operator": "ContainsAny", "valueTextArray": sources}
        body = {"match": {"class": self._collection(version), "where": where}, "output": "minimal"}
        answer = await self._call("DELETE", "/v1/batch/objects", body)
        return int(answer["results"]["successful"])

    async def drop(self, version: str) -> None:
        # Live for any knowledge base: every alias naming the collection counts.
        named = await self._call("GET", "/v1/aliases", params={"class": self._collection(version)})
        if named.get("aliases"):
            raise ValueError(f"{version} is live: publish another version first")
        await self._call("DELETE", f"/v1/schema/{self._collection(version)}", missing_ok=True)
