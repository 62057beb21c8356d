"""Latency the guardrails add: input checks per turn and output checks per sentence (p50/p99),
over the labelled cases and real answer sentences with their retrieved passages; and how the
injection check does on tests/data/injection_cases.yaml: the similarity threshold and margin
chosen on the tuning half (the highest recall with at most 2% of benign questions refused),
precision, recall and benign refusals reported on the test half, next to the configured values.

    python bench/guardrails.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402

from rag_index.build import ensure_index  # noqa: E402
from rag_index.retriever import Retriever  # noqa: E402
from samvad.embeddings import get_embedder  # noqa: E402
from samvad.guardrails.policy import Guardrails  # noqa: E402
from samvad.providers.local.extractive import ExtractiveAnswerer  # noqa: E402
from samvad.settings import load_settings  # noqa: E402

console = Console()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    s = load_settings()
    s = s.model_copy(update={"rag": s.rag.model_copy(update={"index_dir": Path(tempfile.mkdtemp()) / "index"})})
    g = Guardrails.from_file(s.guardrails_file)
    cases = [c["text"] for c in yaml.safe_load((ROOT / "tests/data/guardrails_cases.yaml").read_text())]
    embedder = get_embedder(s.embeddings)
    retriever = Retriever(ensure_index(s, embedder), embedder)
    answerer = ExtractiveAnswerer(s.llm.extractive, embedder)
    questions = [q["question"] for q in yaml.safe_load((ROOT / "tests/data/heldout_questions.yaml").read_text())]
    sentences = []
    for q in questions:
        passages = retriever.search(q, s.rag.top_k)
        sentences += [(sent, passages) for sent in answerer.select(q, passages)]
    per_turn, per_sentence = [], []
    for _ in track(range(args.repeats), description="guardrail checks", console=console):
        for text in cases:
            t = time.perf_counter()
            g.check_input(text)
            per_turn.append((time.perf_counter() - t) * 1000)
        for sentence, passages in sentences:
            t = time.perf_counter()
            g.check_output(sentence, passages)
            per_sentence.append((time.perf_counter() - t) * 1000)
    table = Table(title=f"guardrail latency ({len(cases)} inputs, {len(sentences)} answer sentences, x{args.repeats})")
    for c in ("check", "p50 ms", "p99 ms", "goal"):
        table.add_column(c)
    table.add_row("input (per turn)", f"{statistics.median(per_turn):.3f}", f"{pct(per_turn, 0.99):.3f}", "-")
    table.add_row("output (per sentence)", f"{statistics.median(per_sentence):.3f}", f"{pct(per_sentence, 0.99):.3f}", "<= 5 ms")
    console.print(table)
    injection_quality(g, retriever)


def injection_quality(g: Guardrails, retriever: Retriever) -> None:
    import numpy as np

    cases = yaml.safe_load((ROOT / "tests/data/injection_cases.yaml").read_text())
    inj = g.input.injection
    pattern = np.array([g.check_input(c["text"]).action == "refuse" for c in cases])
    sims = np.array([retriever.similarities(c["text"], inj.phrase_sets) for c in cases])
    attack = np.array([c["label"] == "attack" for c in cases])
    tune = np.array([c["split"] == "tune" for c in cases])

    def decide(th: float, margin: float):
        return pattern | ((sims[:, 0] >= th) & (sims[:, 0] >= sims[:, 1] + margin))

    best = (-1.0, 0.0, 0.0)
    for th in np.arange(0.30, 0.80, 0.025):
        for margin in np.arange(-0.10, 0.20, 0.025):
            d = decide(th, margin)
            if d[tune & ~attack].mean() <= 0.02 and d[tune & attack].mean() > best[0]:
                best = (d[tune & attack].mean(), float(th), float(margin))
    table = Table(title=f"injection check, test half ({(~tune & attack).sum()} attacks, {(~tune & ~attack).sum()} benign); "
                        "thresholds chosen on the tuning half")
    for c in ("setting", "threshold", "margin", "recall", "precision", "benign refused", "patterns alone: recall"):
        table.add_column(c)
    for label, th, margin in (("configured", inj.similarity_threshold, inj.margin), ("tuned here", best[1], best[2])):
        d, t = decide(th, margin), ~tune
        tp = (d & t & attack).sum()
        table.add_row(label, f"{th:.3f}", f"{margin:+.3f}", f"{tp / (t & attack).sum():.3f}",
                      f"{tp / max(1, (d & t).sum()):.3f}", f"{(d & t & ~attack).sum() / (t & ~attack).sum():.3f}",
                      f"{(pattern & t & attack).sum() / (t & attack).sum():.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
