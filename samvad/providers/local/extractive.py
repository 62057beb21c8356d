"""Offline "LLM": a grounded extractive answerer.

No generative model ships inside a package, so the offline engine answers by choosing the
retrieved sentences that best match the question (embedding cosine similarity) and joining
them, best passage first, in document order. When nothing passes the relevance threshold it
says so plainly instead of guessing. It streams one sentence at a time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import numpy as np

from samvad.contracts import Passage, Usage
from samvad.embeddings import Embedder
from samvad.providers.base import CallRecord, Capabilities, ChatModel, ChatRequest
from samvad.sentences import split_sentences
from samvad.settings import ExtractiveSettings

_MARKUP = re.compile(r"^\s*(#+\s*|[-*•]\s+|\d+[.)]\s+|>\s*)")
_MIN_WORDS = 4  # fragments shorter than this are headings or list stubs, not answers


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
    capabilities = Capabilities(streaming=True, languages=frozenset({"en-IN"}))

    def __init__(self, settings: ExtractiveSettings, embedder: Embedder) -> None:
        super().__init__(model=f"extractive/{embedder.model_name.split('/')[-1]}")
        self._s = settings
        self._embedder = embedder

    def select(self, question: str, passages: list[Passage]) -> list[str]:
        """The answer sentences, in speaking order; empty when nothing is relevant enough."""
        if not passages or max(p.score for p in passages) < self._s.passage_threshold:
            return []
        # Answer from the best-retrieved document only: retrieval ranks whole chunks with their
        # headings, which is a far better topic signal than one sentence's similarity, and a
        # spoken answer stitched from two documents rarely reads as one answer.
        top = max(passages, key=lambda p: p.score)
        passages = [p for p in passages if p.source == top.source]
        candidates = _candidates(passages)
        if not candidates:
            return []
        vectors = self._embedder.encode([question] + [c[2] for c in candidates])
        similarity = vectors[1:] @ vectors[0]
        # A sentence's own match plus its chunk's retrieval score picks the right section.
        combined = similarity + self._s.passage_weight * np.array([passages[c[0]].score for c in candidates])
        best = int(np.argmax(combined))
        if similarity[best] < self._s.relevance_threshold:
            return []
        floor = max(self._s.relevance_threshold, similarity[best] - self._s.support_margin)
        support = [i for i in np.argsort(-combined) if i != best and similarity[i] >= floor][: self._s.max_sentences - 1]
        support.sort(key=lambda i: (candidates[i][0], candidates[i][1]))
        return [candidates[best][2]] + [candidates[i][2] for i in support]

    async def _stream_impl(self, request: ChatRequest, rec: CallRecord) -> AsyncIterator[str]:
        question = request.question
        sentences = await asyncio.to_thread(self.select, question, request.passages)
        if not sentences:
            sentences = [self._s.no_answer_text]
        rec.usage = Usage(
            input_tokens=len(question.split()) + sum(len(p.text.split()) for p in request.passages),
            output_tokens=sum(len(s.split()) for s in sentences),
        )
        for sentence in sentences:
            yield sentence + " "
