"""What every vector store answers, whatever holds the vectors: the nearest chunks of one query
vector with their cosine, and what a loaded version holds."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from pydantic import BaseModel


class Hit(NamedTuple):
    chunk_id: int  # the chunk's position in the index folder it was loaded from
    source: str
    heading: str
    text: str
    score: float  # cosine of the (normalised) query and chunk vectors


class StoreInfo(BaseModel):
    store: str
    version: str
    embedder: str
    dimension: int
    chunks: int
    sent: int | None = None  # chunks sent by the last load (an update sends only changed documents)


def faiss_hits(index: object, chunks: list[dict[str, str]], vector: np.ndarray, k: int) -> list[Hit]:
    """The FAISS index's answer in the stores' shape (the index and its chunks, in vector order)."""
    scores, ids = index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), k)  # type: ignore[attr-defined]
    return [
        Hit(int(i), chunks[i]["source"], chunks[i]["heading"], chunks[i]["text"], float(s))
        for s, i in zip(scores[0], ids[0], strict=True)
        if i >= 0
    ]
