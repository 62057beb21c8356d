"""Offline "LLM": a grounded extractive answerer.

No generative model ships inside a package, so the offline engine answers by choosing the
retrieved sentences that best match the question (embedding cosine similarity) and joining
them, best passage first, in document order. When nothing passes the relevance threshold it
says so plainly instead of guessing. It streams one sentence at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from samvad.contracts import Passage, Usage
from samvad.embeddings import Embedder, scale
from samvad.followup import search_query
from samvad.providers.base import CallRecord, Capabilities, ChatModel, ChatRequest
from samvad.sentences import split_sentences
from samvad.settings import ExtractiveSettings

log = logging.getLogger("samvad.extractive")
_MARKUP = re.compile(r"^\s*(#+\s*|[-*•]\s+|\d+[.)]\s+|>\s*)")
_MIN_WORDS = 4  # fragments shorter than this are headings or list stubs, not answers
SENTENCE_CACHE = 20_000  # sentence vectors kept per process (~30 MB with 384 dimensions)


def _candidates(passages: list[Passage]) -> list[tuple[int, int, str]]:
    """(passage index, position, sentence) for every speakable sentence, duplicates removed
    (chunks overlap, so the same sentence can appear twice)."""
    seen: set[str] = set()
    out = []
    for rank, passage in enumerate(passages):
        position = 0
        for line in passage.text.splitlines():
            line = _MARKUP.sub("", line).replace("**", "").strip()
            if not line or line == passage.heading:  # the heading path is context, not an answer
                continue
            if line[-1] not in ".?!।॥":  # list items often lack a full stop; speak them as sentences
                line += "."
            for sentence in split_sentences(line):
                key = sentence.lower()
                if len(sentence.split()) < _MIN_WORDS or key in seen:
                    continue
                seen.add(key)
                out.append((rank, position, sentence))
                position += 1
    return out


class ExtractiveAnswerer(ChatModel):
    name = "extractive"
    capabilities = Capabilities(languages=frozenset({"en-IN"}))

    def __init__(self, settings: ExtractiveSettings, embedder: Embedder) -> None:
        super().__init__(model=f"extractive/{embedder.model_name.split('/')[-1]}")
        self._s = settings
        self._embedder = embedder
        # Answer sentences come from a finite knowledge base, so their vectors are kept: a turn
        # encodes only the question (e5 costs ~8 ms a sentence and a turn weighs 20-40 of them).
        self._vectors: dict[str, np.ndarray] = {}

    def warm_from(self, index_dir: Path, wait_s: float = 120.0) -> threading.Thread:
        """Encode the live index's answer sentences in the background (up to the cache's size),
        so a caller's first question on a topic does not pay for them: with e5 a cold turn spent
        ~350 ms here (measured: first sentence +877 ms from the end of speech in new sessions,
        +681 once warm). Waits for the index when the Retriever is still building it."""

        def run() -> None:
            chunks = Path(index_dir) / "chunks.jsonl"
            deadline = time.monotonic() + wait_s
            while not chunks.exists() and time.monotonic() < deadline:
                time.sleep(1.0)
            try:
                with open(chunks, encoding="utf-8") as f:
                    passages = [
                        Passage(chunk_id=i, score=0.0, **{k: c[k] for k in ("source", "heading", "text")})
                        for i, c in enumerate(map(json.loads, f))
                    ]
                sentences = [c[2] for c in _candidates(passages)][: SENTENCE_CACHE // 2]
                for i in range(0, len(sentences), 64):
                    batch = [t for t in sentences[i : i + 64] if t not in self._vectors]
                    if batch:
                        self._vectors.update(zip(batch, self._embedder.passages(batch), strict=True))
            except (OSError, ValueError, KeyError) as exc:  # a warm-up only: turns encode what they need
                log.info("answer sentences not pre-encoded: %s", exc)

        thread = threading.Thread(target=run, name="extractive-warm", daemon=True)
        thread.start()
        return thread

    def _passage_vectors(self, sentences: list[str]) -> np.ndarray:
        known = {t: v for t in sentences if (v := self._vectors.get(t)) is not None}
        missing = [t for t in dict.fromkeys(sentences) if t not in known]
        if missing:  # (turns run in threads: only whole-dict swaps and single updates here)
            fresh = dict(zip(missing, self._embedder.passages(missing), strict=True))
            known |= fresh
            if len(self._vectors) + len(fresh) > SENTENCE_CACHE:
                self._vectors = {}  # a new knowledge base: start again rather than track age
            self._vectors.update(fresh)
        return np.stack([known[t] for t in sentences])

    def select(self, question: str, passages: list[Passage], context: str | None = None) -> list[str]:
        """The answer sentences, in speaking order; empty when nothing is relevant enough.
        `context`: for a follow-up, the question together with the one it follows."""
        if not passages or max(p.score for p in passages) < self._s.passage_threshold:
            return []
        candidates = _candidates(passages)
        if not candidates:
            return []
        queries = [question] if context is None else [question, context]
        asked = self._embedder.queries(queries)
        sentences = self._passage_vectors([c[2] for c in candidates])
        own = scale(sentences @ asked[0], self._embedder.floor)
        scores = np.array([passages[c[0]].score for c in candidates])
        # Answer from one document: a spoken answer stitched from two rarely reads as one. For a
        # new question, the best-retrieved one (retrieval ranks whole chunks with their headings,
        # a far better topic signal than one sentence). A follow-up was searched together with
        # the question before it, so the old topic ranks high: its own words pick the document
        # ("what about the PIN?" after blocking a card: the PIN page, not the blocking one), and
        # its sentences match the follow-up or the follow-up with its subject ("charges after
        # that?" says little alone).
        if context is None:
            source, similarity = max(passages, key=lambda p: p.score).source, own
        else:
            source = passages[candidates[int(np.argmax(own + self._s.passage_weight * scores))][0]].source
            similarity = np.maximum(own, scale(sentences @ asked[1], self._embedder.floor))
        # A sentence's own match plus its chunk's retrieval score picks the right section.
        combined = similarity + self._s.passage_weight * scores
        keep = [i for i, c in enumerate(candidates) if passages[c[0]].source == source]
        candidates, similarity, combined = [candidates[i] for i in keep], similarity[keep], combined[keep]
        best = int(np.argmax(combined))
        if similarity[best] < self._s.relevance_threshold:
            return []
        floor = max(self._s.relevance_threshold, similarity[best] - self._s.support_margin)
        support = [i for i in np.argsort(-combined) if i != best and similarity[i] >= floor][
            : self._s.max_sentences - 1
        ]
        # Spoken in the document's order: a help page leads with its key instruction ("block it
        # at once in the app") and follows with the alternatives ("you can also send an SMS").
        chosen = sorted([best, *support], key=lambda i: (passages[candidates[i][0]].chunk_id, candidates[i][1]))
        return [candidates[i][2] for i in chosen]

    async def _stream_impl(self, request: ChatRequest, rec: CallRecord) -> AsyncIterator[str]:
        question = request.question
        earlier = [m.content for m in request.messages[:-1] if m.role == "user"]
        context = search_query(question, earlier)  # the retriever's query for this turn
        sentences = await asyncio.to_thread(
            self.select, question, request.passages, context if context != question else None
        )
        if not sentences:
            sentences = [self._s.no_answer_text]
        rec.usage = Usage(
            input_tokens=len(question.split()) + sum(len(p.text.split()) for p in request.passages),
            output_tokens=sum(len(s.split()) for s in sentences),
        )
        for sentence in sentences:
            yield sentence + " "
