"""pgvector: an index version as a table of the configured PostgreSQL, for knowledge bases that
outgrow one Retriever replica's memory or live in a database the company already runs.

A version is loaded from the index folder that `samvad index build` wrote (its chunks and their
vectors, so every store holds the same embeddings), into its own table `rag_chunks_<version>`
with an HNSW index over inner product (the vectors are normalised: inner product is cosine).
`publish` moves the live pointer (one row) in a transaction: a query sees the old version or the
new one. `update` copies the previous version's rows for unchanged documents and inserts only
the changed ones. The extension and the two bookkeeping tables are created on first use (the
service's own migrations do not need pgvector).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import asyncpg
import faiss
import numpy as np

from rag_index.build import CHUNKS_FILE, FAISS_FILE, read_manifest
from rag_index.stores.base import Hit, StoreInfo
from samvad.errors import ProviderError

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS rag_versions (
    version text PRIMARY KEY,
    embedder text NOT NULL,
    dimension int NOT NULL,
    chunks int NOT NULL,
    document_hashes jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS rag_live (
    store text PRIMARY KEY,
    version text NOT NULL REFERENCES rag_versions (version)
);
"""
# HNSW's build and search knobs (pgvector's defaults are m=16, ef_construction=64, ef_search=40);
# ef_search 64 matches the FAISS HNSW index's recall on the sample set.
HNSW = {"m": 16, "ef_construction": 64}
EF_SEARCH = 64
BATCH = 500  # rows per INSERT round trip
# What a store that is down or unreachable raises (a query that takes too long is a TimeoutError).
DOWN = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def table(version: str) -> str:
    """The version's table name: versions are `samvad index build` folder names (v2026…)."""
    if not re.fullmatch(r"[A-Za-z0-9_]{1,50}", version):
        raise ValueError(f"not an index version name: {version!r}")
    return f"rag_chunks_{version.lower()}"


def unavailable(message: str) -> ProviderError:
    """The search cannot run: the turn fails with this clear stage error rather than hanging."""
    return ProviderError(message, provider="pgvector", stage="retrieval", retryable=True, code="retrieval_unavailable")


def version_of(index_dir: Path) -> str:
    """The version name of an index folder (its name, as a table name can hold it)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", Path(index_dir).resolve().name)[-50:]


async def ensure_live(store: PgVectorStore, index_dir: Path) -> str:
    """A live version: the folder loaded and published when there is none yet (first start)."""
    live = await store.live()
    if live is None:
        info, _ = await load_and_publish(store, index_dir)
        return info.version
    return live


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


class PgVectorStore:
    name = "pgvector"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, max_size: int = 4) -> PgVectorStore:
        # ef_search set once per connection: a query is one round trip, not a transaction around
        # a SET LOCAL (four), on the turn path.
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=max_size, server_settings={"hnsw.ef_search": str(EF_SEARCH)}
        )
        async with pool.acquire() as conn:
            await conn.execute(SCHEMA)
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def load(self, index_dir: Path, version: str | None = None, previous: str | None = None) -> StoreInfo:
        """The index folder's chunks and vectors as version `version` (default: the folder's
        name). With `previous` (a loaded version of the same embedder), rows of documents whose
        hash did not change are copied from it and only the others are sent."""
        index_dir = Path(index_dir)
        version = version or version_of(index_dir)
        if previous == version:
            raise ValueError(f"{version} is already loaded: load another folder, or publish {version}")
        manifest = read_manifest(index_dir)
        index = faiss.read_index(str(index_dir / FAISS_FILE))
        vectors = index.reconstruct_n(0, index.ntotal)
        with open(index_dir / CHUNKS_FILE, encoding="utf-8") as f:
            chunks = [json.loads(line) for line in f]
        name = table(version)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
            await conn.execute(
                f"""CREATE TABLE {name} (
                    id int PRIMARY KEY, source text NOT NULL, heading text NOT NULL, text text NOT NULL,
                    embedding vector({manifest.dimension}) NOT NULL)"""
            )
            keep: set[str] = set()
            if previous is not None:
                old = await self._version(conn, previous)
                if (old["embedder"], old["dimension"]) != (manifest.embedding_model, manifest.dimension):
                    raise ValueError(f"{previous} holds {old['embedder']} vectors; load the whole folder instead")
                hashes = json.loads(old["document_hashes"])
                keep = {d for d, h in manifest.document_hashes.items() if hashes.get(d) == h}
            # Row ids are the chunk's position in the folder (what the FAISS store returns too). An
            # unchanged document's rows are matched to its chunks by text, in order (a document may
            # repeat a passage); any chunk left unmatched is sent.
            copied: set[int] = set()
            if keep:
                slots: dict[tuple[str, str], list[int]] = {}
                for i, c in enumerate(chunks):
                    if c["source"] in keep:
                        slots.setdefault((c["source"], c["text"]), []).append(i)
                rows = await conn.fetch(
                    f"SELECT source, heading, text, embedding::text AS e FROM {table(previous or '')}"
                    " WHERE source = ANY($1::text[]) ORDER BY id",
                    sorted(keep),
                )
                reused = []
                for r in rows:
                    if free := slots.get((r["source"], r["text"])):
                        reused.append((free.pop(0), r["source"], r["heading"], r["text"], r["e"]))
                await self._insert(conn, name, reused)
                copied = {row[0] for row in reused}
            fresh = [
                (i, c["source"], c["heading"], c["text"], _literal(vectors[i]))
                for i, c in enumerate(chunks)
                if i not in copied
            ]
            await self._insert(conn, name, fresh)
            await conn.execute(
                f"CREATE INDEX ON {name} USING hnsw (embedding vector_ip_ops)"
                f" WITH (m = {HNSW['m']}, ef_construction = {HNSW['ef_construction']})"
            )
            await conn.execute(
                """INSERT INTO rag_versions (version, embedder, dimension, chunks, document_hashes)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (version) DO UPDATE SET embedder = $2, dimension = $3, chunks = $4,
                       document_hashes = $5, created_at = now()""",
                version,
                manifest.embedding_model,
                manifest.dimension,
                len(chunks),
                json.dumps(manifest.document_hashes),
            )
        return StoreInfo(
            store=self.name,
            version=version,
            embedder=manifest.embedding_model,
            dimension=manifest.dimension,
            chunks=len(chunks),
            sent=len(fresh),
        )

    @staticmethod
    async def _insert(conn: asyncpg.Connection, name: str, rows: list[tuple[Any, ...]]) -> None:
        for i in range(0, len(rows), BATCH):
            await conn.executemany(
                f"INSERT INTO {name} (id, source, heading, text, embedding) VALUES ($1, $2, $3, $4, $5::vector)",
                rows[i : i + BATCH],
            )

    @staticmethod
    async def _version(conn: asyncpg.Connection, version: str) -> asyncpg.Record:
        row = await conn.fetchrow("SELECT * FROM rag_versions WHERE version = $1", version)
        if row is None:
            raise LookupError(f"no pgvector index version {version!r}")
        return row

    async def publish(self, version: str) -> str | None:
        """Make `version` the live one; returns the one it replaces."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self._version(conn, version)
            before: str | None = await conn.fetchval(
                "SELECT version FROM rag_live WHERE store = $1 FOR UPDATE", self.name
            )
            await conn.execute(
                "INSERT INTO rag_live (store, version) VALUES ($1, $2) ON CONFLICT (store) DO UPDATE SET version = $2",
                self.name,
                version,
            )
        return before

    async def live(self) -> str | None:
        version: str | None = await self._pool.fetchval("SELECT version FROM rag_live WHERE store = $1", self.name)
        return version

    async def describe(self, version: str) -> StoreInfo:
        async with self._pool.acquire() as conn:
            row = await self._version(conn, version)
        return StoreInfo(
            store=self.name, version=version, embedder=row["embedder"], dimension=row["dimension"], chunks=row["chunks"]
        )

    async def query(self, version: str, vector: np.ndarray, k: int) -> list[Hit]:
        """The `k` nearest chunks to a normalised query vector, by cosine."""
        sql = (
            f"SELECT id, source, heading, text, -(embedding <#> $1::vector) AS score FROM {table(version)}"
            " ORDER BY embedding <#> $1::vector LIMIT $2"
        )
        args = (_literal(np.asarray(vector, dtype=np.float32).reshape(-1)), k)
        if k <= EF_SEARCH:
            rows = await self._pool.fetch(sql, *args)
        else:  # HNSW returns at most ef_search rows: widen it for this query only
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SET LOCAL hnsw.ef_search = {int(k)}")
                rows = await conn.fetch(sql, *args)
        return [Hit(r["id"], r["source"], r["heading"], r["text"], float(r["score"])) for r in rows]

    async def delete_documents(self, version: str, sources: list[str]) -> int:
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(f"DELETE FROM {table(version)} WHERE source = ANY($1::text[])", sources)
        return int(status.split()[-1])

    async def drop(self, version: str) -> None:
        """Remove a version that is not live (old versions are kept until dropped)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT 1 FROM rag_live WHERE version = $1", version):
                raise ValueError(f"{version} is live: publish another version first")
            await conn.execute(f"DROP TABLE IF EXISTS {table(version)}")
            await conn.execute("DELETE FROM rag_versions WHERE version = $1", version)


async def load_and_publish(store: PgVectorStore, index_dir: Path) -> tuple[StoreInfo, str | None]:
    """Load an index folder as a new version (sending only documents changed since the live
    version, when that was built with the same embedder) and make it live; returns what it
    replaced."""
    manifest = read_manifest(index_dir)
    live = await store.live()
    if live is not None and live == version_of(index_dir):
        return await store.describe(live), live  # this folder is live already
    previous = None
    if live is not None and (await store.describe(live)).embedder == manifest.embedding_model:
        previous = live
    info = await store.load(index_dir, previous=previous)
    return info, await store.publish(info.version)
