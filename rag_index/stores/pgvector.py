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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from rag_index.stores.base import Folder, Hit, StoreDown, StoreInfo, version_name

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
# What a database that is down or unreachable raises (a query that takes too long is a TimeoutError).
DOWN = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@asynccontextmanager
async def _answering() -> AsyncIterator[None]:
    try:
        yield
    except DOWN as exc:
        raise StoreDown(f"pgvector: {type(exc).__name__}") from exc


def table(version: str) -> str:
    """The version's table name: versions are `samvad index build` folder names (v2026…)."""
    if not re.fullmatch(r"[A-Za-z0-9_]{1,50}", version):
        raise ValueError(f"not an index version name: {version!r}")
    return f"rag_chunks_{version.lower()}"


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


class PgVectorStore:
    name = "pgvector"

    def __init__(self, pool: asyncpg.Pool, knowledge_base: str | None = None) -> None:
        self._pool = pool
        # The knowledge base's row of rag_live (its `store` key): one pointer per knowledge base.
        self._pointer = self.name if knowledge_base is None else f"{self.name}@{knowledge_base}"

    @classmethod
    async def connect(cls, dsn: str, max_size: int = 4, knowledge_base: str | None = None) -> PgVectorStore:
        # ef_search set once per connection: a query is one round trip, not a transaction around
        # a SET LOCAL (four), on the turn path.
        async with _answering():
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=max_size, server_settings={"hnsw.ef_search": str(EF_SEARCH)}
            )
            async with pool.acquire() as conn:
                await conn.execute(SCHEMA)
        return cls(pool, knowledge_base)

    async def close(self) -> None:
        await self._pool.close()

    async def load(self, index_dir: Path, version: str | None = None, previous: str | None = None) -> StoreInfo:
        """The index folder's chunks and vectors as version `version` (default: the folder's
        name). With `previous` (a loaded version of the same embedder), rows of documents whose
        hash did not change are copied from it and only the others are sent."""
        version = version_name(version, index_dir)
        if previous == version:
            raise ValueError(f"{version} is already loaded: load another folder, or publish {version}")
        folder = Folder.read(index_dir)
        manifest, chunks, vectors = folder.manifest, folder.chunks, folder.vectors
        name = table(version)
        async with self._pool.acquire() as conn, conn.transaction():
            # Table names fold case: "V1" would drop and refill "v1"'s table (perhaps the live one).
            twin = await conn.fetchval(
                "SELECT version FROM rag_versions WHERE lower(version) = lower($1) AND version <> $1", version
            )
            if twin is not None:
                raise ValueError(
                    f"version {version!r} differs from the loaded {twin!r} only by case: name it otherwise"
                )
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
                keep = folder.unchanged(json.loads(old["document_hashes"]))
            # Row ids are the chunk's position in the folder (what the FAISS store returns too). An
            # unchanged document's rows are copied inside PostgreSQL to their new positions; any
            # chunk left unmatched is sent.
            copied: set[int] = set()
            if keep:
                rows = await conn.fetch(
                    f"SELECT source, heading, text, embedding::text AS e FROM {table(previous or '')}"
                    " WHERE source = ANY($1::text[]) ORDER BY id",
                    sorted(keep),
                )
                places = folder.place([(r["source"], r["text"]) for r in rows])
                reused = [
                    (at, r["source"], r["heading"], r["text"], r["e"])
                    for r, at in zip(rows, places, strict=True)
                    if at is not None
                ]
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
            copied=len(copied),
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
                "SELECT version FROM rag_live WHERE store = $1 FOR UPDATE", self._pointer
            )
            await conn.execute(
                "INSERT INTO rag_live (store, version) VALUES ($1, $2) ON CONFLICT (store) DO UPDATE SET version = $2",
                self._pointer,
                version,
            )
        return before

    async def live(self) -> str | None:
        async with _answering():
            version: str | None = await self._pool.fetchval(
                "SELECT version FROM rag_live WHERE store = $1", self._pointer
            )
        return version

    async def describe(self, version: str) -> StoreInfo:
        async with _answering(), self._pool.acquire() as conn:
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
        async with _answering():
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
