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
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel

import samvad
from rag_index.corpus import Chunk, chunk_document, corpus_hash, load_corpus
from samvad.embeddings import Embedder
from samvad.errors import InputError
from samvad.settings import Settings

MANIFEST = "manifest.json"
FAISS_FILE = "index.faiss"
CHUNKS_FILE = "chunks.jsonl"


class Manifest(BaseModel):
    embedding_model: str
    dimension: int
    index_type: str = "IndexFlatIP"  # or IndexHNSWFlat above rag.ann_threshold chunks
    index_params: dict[str, int] = {}
    chunk_chars: int
    overlap_chars: int
    documents: int
    chunks: int
    corpus_hash: str
    document_hashes: dict[str, str]
    created_at: str
    tool_version: str
    embedded_chunks: int = 0  # chunks embedded by this build (an update reuses the others)


class BuildResult(BaseModel):
    manifest: Manifest
    warnings: list[str]
    seconds: float
    embed_seconds: float


Progress = Callable[[int, int], None]  # (chunks embedded so far, total)


class IndexInvalidError(InputError):
    code = "index_invalid"


def read_manifest(index_dir: Path) -> Manifest:
    try:
        return Manifest.model_validate_json((Path(index_dir) / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexInvalidError(f"no index at {index_dir} (run `samvad index build`)") from None
    except ValueError as exc:
        raise IndexInvalidError(f"the manifest in {index_dir} is invalid: {exc}") from None


def embed_chunks(embedder: Embedder, chunks: list[Chunk], progress: Progress | None = None) -> np.ndarray:
    texts = [c.text for c in chunks]
    step = embedder.batch_size * 4  # a few batches per progress update keeps the bar honest and cheap
    parts = []
    for i in range(0, len(texts), step):
        parts.append(embedder.passages(texts[i : i + step]))
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
    previous: Path | None = None,
    ann_threshold: int | None = None,
) -> BuildResult:
    """Chunk and embed `corpus_dir` into `out_dir`. With `previous` (an index folder built with
    the same model and chunking), unchanged documents reuse its vectors: only new or changed
    documents are embedded, and deleted ones drop out. `previous` itself is never modified."""
    t0 = time.perf_counter()
    docs, warnings = load_corpus(corpus_dir)
    reuse: dict[str, list[tuple[Chunk, np.ndarray]]] = {}
    if previous is not None:
        old = Manifest.model_validate_json((previous / MANIFEST).read_text(encoding="utf-8"))
        if (old.embedding_model, old.dimension) != (embedder.model_name, embedder.dimension):
            raise InputError(
                f"{previous} was built with {old.embedding_model}; rebuild instead of updating", code="index_mismatch"
            )
        chunk_chars, overlap_chars = old.chunk_chars, old.overlap_chars
        unchanged = {d.doc_id for d in docs if old.document_hashes.get(d.doc_id) == d.sha256}
        index = faiss.read_index(str(previous / FAISS_FILE))
        vectors = index.reconstruct_n(0, index.ntotal)
        with open(previous / CHUNKS_FILE, encoding="utf-8") as f:
            for i, line in enumerate(f):
                c = Chunk(**json.loads(line))
                if c.source in unchanged:
                    reuse.setdefault(c.source, []).append((c, vectors[i]))
    chunks: list[Chunk] = []
    fresh: list[Chunk] = []
    slots: list[int] = []  # positions in `chunks` that need a new embedding
    kept: list[tuple[int, np.ndarray]] = []
    for d in docs:
        if d.doc_id in reuse:
            for c, v in reuse[d.doc_id]:
                kept.append((len(chunks), v))
                chunks.append(c)
        else:
            for c in chunk_document(d, chunk_chars, overlap_chars):
                slots.append(len(chunks))
                fresh.append(c)
                chunks.append(c)
    t_embed = time.perf_counter()
    new_vectors = embed_chunks(embedder, fresh, progress)
    embed_seconds = time.perf_counter() - t_embed
    matrix = np.zeros((len(chunks), embedder.dimension), dtype=np.float32)
    for pos, v in kept:
        matrix[pos] = v
    if slots:
        matrix[slots] = new_vectors
    index, index_type, params = _make_index(embedder.dimension, len(chunks), ann_threshold)
    index.add(matrix)
    manifest = Manifest(
        index_type=index_type,
        index_params=params,
        embedding_model=embedder.model_name,
        dimension=embedder.dimension,
        chunk_chars=chunk_chars,
        overlap_chars=overlap_chars,
        documents=len(docs),
        chunks=len(chunks),
        corpus_hash=corpus_hash(docs),
        document_hashes={d.doc_id: d.sha256 for d in docs},
        created_at=datetime.now(UTC).isoformat(),
        tool_version=samvad.__version__,
        embedded_chunks=len(fresh),
    )
    _write_atomically(out_dir, index, chunks, manifest)
    return BuildResult(
        manifest=manifest, warnings=warnings, seconds=time.perf_counter() - t0, embed_seconds=embed_seconds
    )


def _make_index(dim: int, n: int, ann_threshold: int | None) -> tuple[faiss.Index, str, dict[str, int]]:
    """Exact inner product by default; a graph index (HNSW) for big corpora, where exact search
    grows linearly. Its recall cost is what `samvad index eval` measures."""
    if ann_threshold is None or n <= ann_threshold:
        return faiss.IndexFlatIP(dim), "IndexFlatIP", {}
    params = {"M": 32, "efConstruction": 80, "efSearch": 64}
    index = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params["efConstruction"]
    index.hnsw.efSearch = params["efSearch"]
    return index, "IndexHNSWFlat", params


def publish(index_dir: Path, live: Path) -> Path | None:
    """Point the live path (a symlink) at `index_dir`, atomically: a reader sees the old index
    or the new one, never neither. Returns the previous target (None on first publish)."""
    index_dir = index_dir.resolve()
    Manifest.model_validate_json((index_dir / MANIFEST).read_text(encoding="utf-8"))  # refuse a non-index
    live.parent.mkdir(parents=True, exist_ok=True)
    previous = live.resolve() if live.is_symlink() else None
    if live.exists() and not live.is_symlink():
        raise InputError(f"{live} is a folder, not a published pointer; move it away first", code="index_pointer")
    tmp = live.with_name(f".{live.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(index_dir, tmp)
    os.replace(tmp, live)  # rename(2) over the old link: atomic
    return previous


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
    """The live index: `rag.index_dir`. On first use it is built from `rag.corpus_dir` into a
    version folder beside it and published there (a symlink), like `samvad index publish`.
    It is rebuilt the same way when it was built from the configured corpus with another
    embedding model (the embedder setting changed); an index of another corpus built with
    another model is left for the Retriever to refuse."""
    live = Path(settings.rag.index_dir)
    stale = False
    if (live / MANIFEST).is_file():
        old = read_manifest(live)
        if old.embedding_model != embedder.model_name:
            docs, _ = load_corpus(Path(settings.rag.corpus_dir))
            stale = old.corpus_hash == corpus_hash(docs)
    if stale or not (live / MANIFEST).is_file():
        version = live.parent / "versions" / datetime.now(UTC).strftime("v%Y%m%dT%H%M%S%f")
        build_index(
            Path(settings.rag.corpus_dir),
            version,
            embedder,
            chunk_chars=settings.rag.chunk_chars,
            overlap_chars=settings.rag.overlap_chars,
            progress=progress,
            ann_threshold=settings.rag.ann_threshold,
        )
        publish(version, live)
    return live
