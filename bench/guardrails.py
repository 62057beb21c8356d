"""Latency the guardrails add: input checks per turn and output checks per sentence (p50/p99),
over the labelled cases and real answer sentences with their retrieved passages; and how the
injection check does on tests/data/injection_cases.yaml: the similarity threshold and margin
chosen on the tuning half (the highest recall with at most 2% of benign questions refused),
precision, recall and benign refusals reported on the test half, next to the configured values.

    python -m bench.guardrails [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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

console = Console(width=150)


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
    table.add_row(
        "output (per sentence)", f"{statistics.median(per_sentence):.3f}", f"{pct(per_sentence, 0.99):.3f}", "<= 5 ms"
    )
    console.print(table)
    injection_quality(g, retriever)


def injection_quality(g: Guardrails, retriever: Retriever) -> None:
    """The embedding half of the injection check, before (closest known attack against closest
    benign example, the rule it replaced) and after (the classifier), on the same library and the
    same cases: each setting is chosen on the tuning half (highest recall with at most 2% of its
    benign questions refused) and reported on the test half, overall and per language."""
    import numpy as np

    from samvad.guardrails.attack_model import AttackModel, clauses
    from samvad.language import devanagari_reading

    cases = yaml.safe_load((ROOT / "tests/data/injection_cases.yaml").read_text())
    inj = g.input.injection
    lib = inj.attack_library
    attacks_v = retriever.query_vectors(list(lib.attacks), readings=False)
    benign_v = retriever.query_vectors(list(lib.benign), readings=False)
    parts = [clauses(c["text"]) for c in cases]
    vectors = [
        retriever.query_vectors(p, readings=False)
        for p in track(parts, description="encoding the cases", console=console)
    ]
    pattern = np.array([g.check_input(c["text"]).action == "refuse" for c in cases])
    attack = np.array([c["label"] == "attack" for c in cases])
    tune, test = np.array([c["split"] == "tune" for c in cases]), np.array([c["split"] == "test" for c in cases])
    language = np.array(
        [
            "Devanagari"
            if any("\u0900" <= ch <= "\u097f" for ch in c["text"])
            else "Hinglish"
            if devanagari_reading(c["text"])
            else "English"
            for c in cases
        ]
    )

    def choose(score: np.ndarray) -> float:
        """The lowest threshold that refuses at most 2% of the tuning half's benign questions."""
        for th in np.unique(score[tune]):
            if (pattern | (score >= th))[tune & ~attack].mean() <= 0.02:
                return float(th)
        return float("inf")

    whole = np.array([v[0] for v in vectors])
    nearest = (whole @ attacks_v.T).max(1) - (whole @ benign_v.T).max(1)  # closest attack minus closest benign
    rows = [("before: closest attack - closest benign", nearest, choose(nearest))]
    for c in (3.0, 10.0, 30.0, 100.0):
        model = AttackModel.fit(attacks_v, benign_v, c)
        score = np.array([model.score(v) for v in vectors])
        if c == inj.regularization:
            rows.append((f"after, configured (C={c:g})", score, inj.threshold))
        rows.append((f"after, C={c:g} tuned here", score, choose(score)))
    table = Table(
        title=f"injection check, test half ({(test & attack).sum()} attacks, {(test & ~attack).sum()} benign; "
        f"library {len(lib.attacks)} attacks + {len(lib.benign)} benign); chosen on the tuning half"
    )
    for col in (
        "setting",
        "threshold",
        "recall",
        "precision",
        "benign refused",
        "recall en / hinglish / devanagari",
        "benign refused en / hinglish / devanagari",
    ):
        table.add_column(col)
    for label, score, th in rows:
        d = pattern | (score >= th)
        tp = (d & test & attack).sum()

        def by(mask, d=d):
            return " / ".join(
                f"{d[mask & (language == lang)].mean():.2f}" for lang in ("English", "Hinglish", "Devanagari")
            )

        table.add_row(
            label,
            f"{th:.3f}",
            f"{tp / (test & attack).sum():.3f}",
            f"{tp / max(1, (d & test).sum()):.3f}",
            f"{(d & test & ~attack).sum() / (test & ~attack).sum():.3f}",
            by(test & attack),
            by(test & ~attack),
        )
    table.add_row(
        "patterns alone",
        "-",
        f"{(pattern & test & attack).sum() / (test & attack).sum():.3f}",
        "-",
        f"{(pattern & test & ~attack).sum() / (test & ~attack).sum():.3f}",
        "",
        "",
    )
    console.print(table)
    qa = yaml.safe_load((ROOT / "data/qa_sample.yaml").read_text())
    ordinary = [q["question"] for q in (qa["questions"] if isinstance(qa, dict) else qa)]
    model = AttackModel.fit(attacks_v, benign_v, inj.regularization)
    refused = [
        q
        for q in ordinary
        if g.check_input(q).action == "refuse"
        or model.score(retriever.query_vectors(clauses(q), readings=False)) >= inj.threshold
    ]
    console.print(
        f"ordinary questions of data/qa_sample.yaml refused as attacks (configured): {len(refused)} of {len(ordinary)}"
        + (f": {refused}" if refused else "")
    )
    # What the check adds to the turn's one Retriever call (the search encodes the question anyway).
    with_check, without = [], []
    for q in ordinary:
        for out, library in ((with_check, lib), (without, None)):
            t = time.perf_counter()
            retriever.lookup(q, library, 4)
            out.append((time.perf_counter() - t) * 1000)
    console.print(
        f"Retriever lookup per turn, {len(ordinary)} questions: with the attack check p50 {statistics.median(with_check):.1f} ms "
        f"p99 {pct(with_check, 0.99):.1f}; search alone p50 {statistics.median(without):.1f} ms p99 {pct(without, 0.99):.1f}"
    )


if __name__ == "__main__":
    main()
