"""Synthetic index versions for store tests and benchmarks: vectors clustered like embeddings of
a corpus (topics of ~100 chunks around a centre, since uniformly random vectors have no near
neighbours for a graph index to find), one document per 100 chunks, written as
`samvad index build` writes a folder."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

import samvad
from rag_index.build import Manifest, _make_index, _write_atomically
from rag_index.corpus import Chunk

SPREAD = 0.6  # a chunk's distance from its topic's centre (cosine to it ~0.85)


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    dimension = centres.shape[1]
    noise = rng.standard_normal((n, dimension)).astype(np.float32) * float(SPREAD / np.sqrt(dimension))
    vectors = centres[rng.integers(0, len(centres), n)] + noise
    faiss.normalize_L2(vectors)
    return vectors


def topics(size: int, dimension: int) -> np.ndarray:
    centres = np.random.default_rng(7).standard_normal((max(1, size // 100), dimension)).astype(np.float32)
    faiss.normalize_L2(centres)
    return centres


def synthetic_version(
    folder: Path,
    size: int,
    dimension: int = 384,
    ann_threshold: int = 50_000,
    embedder: str = "synthetic",
    text_chars: int = 0,
) -> np.ndarray:
    """Write a version of `size` chunks into `folder`; returns its vectors. A chunk's text is
    `chunk i`, or `text_chars` characters starting so, for a corpus's memory."""
    vectors = clustered(np.random.default_rng(size), topics(size, dimension), size)
    texts = [f"chunk {i} ".ljust(text_chars, "x") if text_chars else f"chunk {i}" for i in range(size)]
    chunks = [
        Chunk(f"doc{i // 100:05d}.md", f"doc {i // 100} > part {i % 100}", text, 0, len(text))
        for i, text in enumerate(texts)
    ]
    index, index_type, params = _make_index(dimension, size, ann_threshold)
    index.add(vectors)
    hashes = {c.source: c.source for c in chunks}
    manifest = Manifest(
        embedding_model=embedder,
        dimension=dimension,
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
    return vectors
