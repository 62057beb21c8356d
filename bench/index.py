"""Index benchmarks (bounded, local):
1. build throughput (chunks/s) vs raw SentenceTransformer.encode on the same chunks (ratio);
2. incremental update time for 1 changed document of 100, vs a full rebuild;
3. retrieval p50 including query embedding at 10k and 100k chunks (synthetic vectors).

  python -m bench.index [--repeats 3] [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402

from rag_index.build import build_index  # noqa: E402
from rag_index.corpus import chunk_document, load_corpus  # noqa: E402
from samvad.embeddings import get_embedder  # noqa: E402
from samvad.settings import load_settings  # noqa: E402

console = Console()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="10000,100000")
    args = ap.parse_args()
    s = load_settings()
    e = get_embedder(s.embeddings)
    corpus = ROOT / "data" / "sample_corpus"
    docs, _ = load_corpus(corpus)
    texts = [c.text for d in docs for c in chunk_document(d, s.rag.chunk_chars, s.rag.overlap_chars)]
    tmp = Path(tempfile.mkdtemp())
    raw, ours = [], []
    for _ in track(range(args.repeats), description="build vs raw encode", console=console):
        t = time.perf_counter()
        e.passages(texts)
        raw.append(len(texts) / (time.perf_counter() - t))
        t = time.perf_counter()
        build_index(corpus, tmp / "b", e, chunk_chars=s.rag.chunk_chars, overlap_chars=s.rag.overlap_chars)
        ours.append(len(texts) / (time.perf_counter() - t))

    # 100 documents: the sample corpus twice (renamed copies), then one edited.
    big = tmp / "corpus100"
    for i, d in enumerate((docs * 2)[:100]):
        path = big / f"{i:03d}-{Path(d.doc_id).name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(d.text)
    build_index(big, tmp / "v1", e, chunk_chars=s.rag.chunk_chars, overlap_chars=s.rag.overlap_chars)
    edited = sorted(big.iterdir())[7]
    full, incremental = [], []
    for n in track(range(args.repeats), description="update 1 of 100 vs full", console=console):
        edited.write_text(edited.read_text() + f"\n\nEdit number {n}.\n")
        t = time.perf_counter()
        build_index(
            big, tmp / "v2", e, chunk_chars=s.rag.chunk_chars, overlap_chars=s.rag.overlap_chars, previous=tmp / "v1"
        )
        incremental.append(time.perf_counter() - t)
        t = time.perf_counter()
        build_index(big, tmp / "v3", e, chunk_chars=s.rag.chunk_chars, overlap_chars=s.rag.overlap_chars)
        full.append(time.perf_counter() - t)

    rows = []
    queries = ["How do I block my card?", "What is the UPI limit?", "home loan interest", "branch hours on Saturday"]
    for size in (int(x) for x in args.sizes.split(",")):
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((size, e.dimension)).astype(np.float32)
        faiss.normalize_L2(vectors)
        index = faiss.IndexFlatIP(e.dimension)
        index.add(vectors)
        times = []
        for i in track(range(200), description=f"search at {size} chunks", console=console):
            t = time.perf_counter()
            index.search(e.queries([queries[i % len(queries)]]), 5)
            times.append((time.perf_counter() - t) * 1000)
        rows.append((size, statistics.median(times)))
    shutil.rmtree(tmp, ignore_errors=True)

    t = Table(title=f"index build, {len(texts)} chunks, {args.repeats} alternating runs (median)")
    for c in ("raw encode chunks/s", "samvad build chunks/s", "ratio"):
        t.add_column(c)
    t.add_row(
        f"{statistics.median(raw):.0f}",
        f"{statistics.median(ours):.0f}",
        f"{statistics.median(ours) / statistics.median(raw):.2f}",
    )
    console.print(t)
    t = Table(title="1 changed document of 100 (median s)")
    for c in ("incremental update", "full rebuild", "speed-up"):
        t.add_column(c)
    t.add_row(
        f"{statistics.median(incremental):.2f}",
        f"{statistics.median(full):.2f}",
        f"{statistics.median(full) / statistics.median(incremental):.1f}x",
    )
    console.print(t)
    t = Table(title="retrieval p50 incl. query embedding, IndexFlatIP (ms)")
    for c in ("chunks", "p50 ms"):
        t.add_column(c)
    for size, p50 in rows:
        t.add_row(str(size), f"{p50:.1f}")
    console.print(t)


if __name__ == "__main__":
    main()
