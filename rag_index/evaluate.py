"""Retrieval quality on a labelled QA file: recall@k, MRR and nDCG@k over source documents.

QA file (YAML): a list of {question, sources: [document ids], kind?, history?}. A retrieved chunk
counts for its document; each document counts once, at its best rank. `history` (what the caller
said before, oldest first) makes the question a follow-up: it is searched as the service searches
it (`samvad.followup.search_query`), or — with `conversational=False` — on its own words."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import BaseModel, Field

from samvad.contracts import Passage
from samvad.errors import InputError
from samvad.followup import search_query


class QaItem(BaseModel):
    question: str
    sources: list[str] = Field(min_length=1)
    kind: str = "plain"  # plain | paraphrase | hinglish; follow-ups: pronoun | ellipsis | switch
    history: list[str] = []  # the caller's earlier utterances in the conversation, oldest first


class Scores(BaseModel):
    questions: int
    k: int
    recall_at_k: float
    mrr: float
    ndcg_at_k: float
    by_kind: dict[str, float] = {}  # recall@k per question kind
    mrr_by_kind: dict[str, float] = {}
    follow_up_recall: float | None = None  # recall@k of the questions with history, topic switches apart
    search_ms_p50: float = 0.0  # one search, query embedding included


class Searches(Protocol):
    """An index as `evaluate` asks it: FAISS in process, or any store behind a retriever."""

    def search(self, query: str, k: int) -> list[Passage]: ...


def load_qa(path: Path, known_documents: set[str]) -> list[QaItem]:
    try:
        items = [QaItem.model_validate(x) for x in yaml.safe_load(path.read_text(encoding="utf-8"))]
    except (OSError, yaml.YAMLError, TypeError, ValueError) as exc:
        raise InputError(f"cannot read the QA file {path}: {exc}", code="qa_invalid") from None
    unknown = sorted({s for it in items for s in it.sources} - known_documents)
    if unknown:
        raise InputError(
            f"the QA file names documents the index does not have: {', '.join(unknown[:5])}",
            code="qa_unknown_documents",
        )
    return items


def evaluate(
    retriever: Searches,
    items: list[QaItem],
    k: int = 5,
    progress: Callable[[int, int], None] | None = None,
    *,
    conversational: bool = True,
) -> Scores:
    recall: list[float] = []
    rr: list[float] = []
    ndcg: list[float] = []
    kinds: dict[str, list[float]] = {}
    kind_rr: dict[str, list[float]] = {}
    took: list[float] = []
    depth = k * 4  # chunks, so that k distinct documents are usually among them
    for n, item in enumerate(items, 1):
        ranked: list[str] = []
        query = search_query(item.question, item.history) if conversational else item.question
        started = time.perf_counter()
        found = retriever.search(query, depth)
        took.append((time.perf_counter() - started) * 1000)
        for p in found:
            if p.source not in ranked:
                ranked.append(p.source)
        ranked = ranked[:k]
        relevant = set(item.sources)
        hits = [i for i, doc in enumerate(ranked) if doc in relevant]
        recall.append(1.0 if hits else 0.0)
        rr.append(1.0 / (hits[0] + 1) if hits else 0.0)
        dcg = sum(1.0 / math.log2(i + 2) for i in hits)
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
        ndcg.append(dcg / ideal)
        kinds.setdefault(item.kind, []).append(recall[-1])
        kind_rr.setdefault(item.kind, []).append(rr[-1])
        if progress:
            progress(n, len(items))

    def mean(xs: list[float]) -> float:
        return round(sum(xs) / len(xs), 4) if xs else 0.0

    follow = [r for r, item in zip(recall, items, strict=True) if item.history and item.kind != "switch"]
    return Scores(
        questions=len(items),
        k=k,
        recall_at_k=mean(recall),
        mrr=mean(rr),
        ndcg_at_k=mean(ndcg),
        by_kind={kind: mean(v) for kind, v in sorted(kinds.items())},
        mrr_by_kind={kind: mean(v) for kind, v in sorted(kind_rr.items())},
        follow_up_recall=mean(follow) if follow else None,
        search_ms_p50=round(statistics.median(took), 2) if took else 0.0,
    )
