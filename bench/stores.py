"""Vector stores side by side: the same synthetic index version (the default embedder's
dimension; clustered like embeddings of a corpus — topics of ~100 chunks around a centre — since
uniformly random vectors have no near neighbours for a graph index to find; one document per
100 chunks) searched in FAISS in process and
in pgvector in the embedded PostgreSQL, at each size: query p50/p95 (the vector search only:
embedding the question costs every store the same), recall@10 against exact search, and the
time to load the version into the store.

  python -m bench.stores [--sizes 10000,100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

import samvad
from rag_index.build import Manifest, _make_index, _write_atomically
from rag_index.corpus import Chunk
from rag_index.stores.base import faiss_hits
from rag_index.stores.pgvector import PgVectorStore
from samvad.settings import load_settings
from samvad.storage import embedded

console = Console()
DIMENSION = 384  # multilingual-e5-small, the default embedder


SPREAD = 0.6  # a chunk's distance from its topic's centre (cosine to it ~0.85)


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    noise = rng.standard_normal((n, DIMENSION)).astype(np.float32) * float(SPREAD / np.sqrt(DIMENSION))
    vectors = centres[rng.integers(0, len(centres), n)] + noise
    faiss.normalize_L2(vectors)
    return vectors


def topics(size: int) -> np.ndarray:
    centres = np.random.default_rng(7).standard_normal((max(1, size // 100), DIMENSION)).astype(np.float32)
    faiss.normalize_L2(centres)
    return centres


def synthetic_version(folder: Path, size: int, ann_threshold: int) -> tuple[np.ndarray, list[dict[str, str]]]:
    vectors = clustered(np.random.default_rng(size), topics(size), size)
    chunks = [
        Chunk(f"doc{i // 100:05d}.md", f"doc {i // 100} > part {i % 100}", f"chunk {i}", 0, 8) for i in range(size)
    ]
    index, index_type, params = _make_index(DIMENSION, size, ann_threshold)
    index.add(vectors)
    hashes = {c.source: c.source for c in chunks}
    manifest = Manifest(
        embedding_model="synthetic",
        dimension=DIMENSION,
        index_type=index_type,
        index_params=params,
        chunk_chars=700,
        overlap_chars=120,
        documents=len(hashes),
        chunks=size,
        corpus_hash="synthetic",
        document_hashes=hashes,
        created_at=datetime.now(UTC).isoformat(),
        tool_version=samvad.__version__,
    )
    _write_atomically(folder, index, chunks, manifest)
    return vectors, [{"source": c.source, "heading": c.heading, "text": c.text} for c in chunks]


def _p(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100)[int(q) - 1] if len(times) > 1 else times[0]


async def measure(size: int, queries: int, dsn: str, tmp: Path, ann_threshold: int) -> dict[str, float | str]:
    folder = tmp / f"v{size}"
    vectors, chunks = synthetic_version(folder, size, ann_threshold)
    index = faiss.read_index(str(folder / "index.faiss"))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = 64
    exact = faiss.IndexFlatIP(DIMENSION)
    exact.add(vectors)
    asks = clustered(np.random.default_rng(1), topics(size), queries)  # questions about the same topics
    truth = [set(exact.search(q.reshape(1, -1), 10)[1][0].tolist()) for q in asks]

    store = await PgVectorStore.connect(dsn)
    try:
        t = time.perf_counter()
        await store.load(folder, f"bench{size}")
        load_s = time.perf_counter() - t
        faiss_ms, pg_ms, faiss_recall, pg_recall = [], [], [], []
        for q, want in track(list(zip(asks, truth, strict=True)), description=f"{size} chunks", console=console):
            t = time.perf_counter()
            hits = faiss_hits(index, chunks, q, 10)
            faiss_ms.append((time.perf_counter() - t) * 1000)
            faiss_recall.append(len({h.chunk_id for h in hits} & want) / 10)
            t = time.perf_counter()
            hits = await store.query(f"bench{size}", q, 10)
            pg_ms.append((time.perf_counter() - t) * 1000)
            pg_recall.append(len({h.chunk_id for h in hits} & want) / 10)
        await store.drop(f"bench{size}")
    finally:
        await store.close()
    return {
        "size": size,
        "faiss index": "HNSW" if size > ann_threshold else "exact",
        "faiss p50": statistics.median(faiss_ms),
        "faiss p95": _p(faiss_ms, 95),
        "faiss recall@10": statistics.mean(faiss_recall),
        "pgvector p50": statistics.median(pg_ms),
        "pgvector p95": _p(pg_ms, 95),
        "pgvector recall@10": statistics.mean(pg_recall),
        "pgvector load s": load_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    ann_threshold = load_settings().rag.ann_threshold
    tmp = Path(tempfile.mkdtemp(prefix="samvad-stores-"))
    dsn = embedded.start_postgres(tmp)
    try:
        rows = [
            asyncio.run(measure(int(size), args.queries, dsn, tmp, ann_threshold)) for size in args.sizes.split(",")
        ]
    finally:
        embedded.stop_postgres(tmp)
    table = Table(title=f"vector search, {args.queries} queries, top-10, {DIMENSION} dims (ms; recall vs exact)")
    table.add_column("chunks")
    for row in rows:
        table.add_column(str(row["size"]))
    for metric in list(rows[0])[1:]:
        table.add_row(metric, *(f"{v:.3f}" if isinstance(v, float) else str(v) for v in (r[metric] for r in rows)))
    console.print(table)


if __name__ == "__main__":
    main()
