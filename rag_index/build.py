"""Build a FAISS index from a corpus folder: chunk, embed in batches, write the index folder.

An index folder holds `index.faiss` (inner product over normalised vectors = cosine),
`chunks.jsonl` (one chunk per line, in vector order) and `manifest.json`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel

import samvad
from rag_index.corpus import Chunk, chunk_document, corpus_hash, load_corpus
from samvad.embeddings import Embedder
from samvad.settings import Settings

MANIFEST = "manifest.json"
FAISS_FILE = "index.faiss"
CHUNKS_FILE = "chunks.jsonl"


class Manifest(BaseModel):
    embedding_model: str
    dimension: int
    index_type: str = "IndexFlatIP"
    chunk_chars: int
    overlap_chars: int
    documents: int
    chunks: int
    corpus_hash: str
    document_hashes: dict[str, str]
    created_at: str
    tool_version: str


class BuildResult(BaseModel):
    manifest: Manifest
    warnings: list[str]
    seconds: float
    embed_seconds: float


Progress = Callable[[int, int], None]  # (chunks embedded so far, total)


def embed_chunks(embedder: Embedder, chunks: list[Chunk], progress: Progress | None = None) -> np.ndarray:
    texts = [c.text for c in chunks]
    step = embedder.batch_size * 4  # a few batches per progress update keeps the bar honest and cheap
    parts = []
    for i in range(0, len(texts), step):
        parts.append(embedder.encode(texts[i : i + step]))
        if progress:
            progress(min(i + step, len(texts)), len(texts))
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dimension), dtype=np.float32)


def build_index(
    corpus_dir: Path,
    out_dir: Path,
    embedder: Embedder,
    *,
    chunk_chars: int,
    overlap_chars: int,
    progress: Progress | None = None,
) -> BuildResult:
    t0 = time.perf_counter()
    docs, warnings = load_corpus(corpus_dir)
    chunks = [c for d in docs for c in chunk_document(d, chunk_chars, overlap_chars)]
    t_embed = time.perf_counter()
    vectors = embed_chunks(embedder, chunks, progress)
    embed_seconds = time.perf_counter() - t_embed
    index = faiss.IndexFlatIP(embedder.dimension)
    index.add(vectors)
    manifest = Manifest(
        embedding_model=embedder.model_name,
        dimension=embedder.dimension,
        chunk_chars=chunk_chars,
        overlap_chars=overlap_chars,
        documents=len(docs),
        chunks=len(chunks),
        corpus_hash=corpus_hash(docs),
        document_hashes={d.doc_id: d.sha256 for d in docs},
        created_at=datetime.now(timezone.utc).isoformat(),
        tool_version=samvad.__version__,
    )
    _write_atomically(out_dir, index, chunks, manifest)
    return BuildResult(
        manifest=manifest, warnings=warnings, seconds=time.perf_counter() - t0, embed_seconds=embed_seconds
    )


def _write_atomically(out_dir: Path, index: faiss.Index, chunks: list[Chunk], manifest: Manifest) -> None:
    """Write into a sibling temp folder, then rename: a reader never sees half an index."""
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        faiss.write_index(index, str(tmp / FAISS_FILE))
        with open(tmp / CHUNKS_FILE, "w", encoding="utf-8") as f:
            for c in chunks:
                f.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_index(settings: Settings, embedder: Embedder, progress: Progress | None = None) -> Path:
    """Build the configured index from the configured corpus if it does not exist yet."""
    index_dir = Path(settings.rag.index_dir)
    if not (index_dir / MANIFEST).is_file():
        build_index(
            Path(settings.rag.corpus_dir),
            index_dir,
            embedder,
            chunk_chars=settings.rag.chunk_chars,
            overlap_chars=settings.rag.overlap_chars,
            progress=progress,
        )
    return index_dir
