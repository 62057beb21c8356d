"""Vector stores side by side: the same synthetic index version (the default embedder's
dimension; vectors clustered like a corpus's embeddings, testkit/index_folder.py) searched in
FAISS in process and in each shared store, at each size: query p50/p95 (the vector search only:
embedding the question costs every store the same), recall@10 against exact search, and the
time to load the version into the store. For FAISS, also the memory a Retriever replica gains by
loading the version (in a fresh process, so that nothing freed before is reused): every replica
holds each knowledge base it serves, so this is the cost per knowledge base per replica. Chunks
carry 700 characters of text, the configured chunk size (ASCII: text in an Indian script takes
twice the bytes in memory).

pgvector runs in the embedded PostgreSQL. Pinecone and Weaviate are measured only where they are
configured (providers.pinecone / providers.weaviate, e.g. SAMVAD_PROVIDERS__PINECONE__BASE_URL and
SAMVAD_PINECONE_API_KEY): their latency is the network's as much as theirs, so a fake would say
nothing about them.

  python -m bench.stores [--sizes 10000,100000] [--queries 200] [--stores faiss,pgvector,pinecone,weaviate]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import faiss
import numpy as np
import psutil
from rich.console import Console
from rich.progress import track
from rich.table import Table

from rag_index.retriever import Retriever
from rag_index.stores import open_store
from rag_index.stores.base import faiss_hits
from samvad.embeddings import Embedder
from samvad.settings import Settings, load_settings
from samvad.storage import embedded
from testkit.index_folder import clustered, synthetic_version, topics

console = Console()
DIMENSION = 384  # multilingual-e5-small, the default embedder
TEXT_CHARS = 700  # rag.chunk_chars


def _replica_mb(folder: str) -> float:
    """What loading the version adds to a process's resident memory, as a Retriever holds it."""
    me = psutil.Process()
    gc.collect()
    before = me.memory_info().rss
    # The manifest's embedder is all a Retriever checks before loading; queries are not run here.
    retriever = Retriever(Path(folder), cast(Embedder, SimpleNamespace(model_name="synthetic", dimension=DIMENSION)))
    gc.collect()
    gained = me.memory_info().rss - before
    del retriever
    return gained / 2**20


def _p(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100)[int(q) - 1] if len(times) > 1 else times[0]


async def measure(size: int, queries: int, stores: list[str], s: Settings, tmp: Path) -> dict[str, float | str]:
    folder = tmp / f"v{size}"
    vectors = synthetic_version(folder, size, DIMENSION, s.rag.ann_threshold, text_chars=TEXT_CHARS)
    chunks = [{"source": f"doc{i // 100:05d}.md", "heading": "", "text": f"chunk {i}"} for i in range(size)]
    index = faiss.read_index(str(folder / "index.faiss"))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = 64
    exact = faiss.IndexFlatIP(DIMENSION)
    exact.add(vectors)
    asks = clustered(np.random.default_rng(1), topics(size, DIMENSION), queries)  # questions about the same topics
    truth = [set(exact.search(q.reshape(1, -1), 10)[1][0].tolist()) for q in asks]
    row: dict[str, float | str] = {"size": size, "faiss index": "HNSW" if size > s.rag.ann_threshold else "exact"}
    opened = {name: await open_store(s, name) for name in stores if name != "faiss"}
    try:
        load_s = {}
        for name, store in opened.items():
            t = time.perf_counter()
            await store.load(folder, f"bench{size}")
            load_s[name] = time.perf_counter() - t
        ms: dict[str, list[float]] = {name: [] for name in stores}
        recall: dict[str, list[float]] = {name: [] for name in stores}
        for q, want in track(list(zip(asks, truth, strict=True)), description=f"{size} chunks", console=console):
            for name in stores:  # interleaved, so the machine's noise falls on every store alike
                t = time.perf_counter()
                if name == "faiss":
                    hits = faiss_hits(index, chunks, q, 10)
                else:
                    hits = await opened[name].query(f"bench{size}", q, 10)
                ms[name].append((time.perf_counter() - t) * 1000)
                recall[name].append(len({h.chunk_id for h in hits} & want) / 10)
        if "faiss" in stores:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                row["faiss replica MB"] = pool.submit(_replica_mb, str(folder)).result()
        for name in stores:
            row[f"{name} p50"] = statistics.median(ms[name])
            row[f"{name} p95"] = _p(ms[name], 95)
            row[f"{name} recall@10"] = statistics.mean(recall[name])
            if name in load_s:
                row[f"{name} load s"] = load_s[name]
        for store in opened.values():
            await store.drop(f"bench{size}")
    finally:
        for store in opened.values():
            await store.close()
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--stores", default="faiss,pgvector", help="faiss, pgvector, pinecone, weaviate (configured)")
    args = ap.parse_args()
    stores = args.stores.split(",")
    s = load_settings()
    tmp = Path(tempfile.mkdtemp(prefix="samvad-stores-"))
    if "pgvector" in stores:
        s = s.model_copy(update={"database_url": embedded.start_postgres(tmp)})
    try:
        rows = [asyncio.run(measure(int(size), args.queries, stores, s, tmp)) for size in args.sizes.split(",")]
    finally:
        if "pgvector" in stores:
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
