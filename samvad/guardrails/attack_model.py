"""The embedding half of the injection check: a logistic regression over sentence embeddings,
fitted on the policy's library of known attacks and honest customer questions.

Why a classifier and not "closest known attack": with a multilingual embedder, everything in the
same language and register sits close together (a Hinglish question about a PIN is as close to a
Hinglish attack as a paraphrased attack is), so the best cosine cannot separate them. A linear
model over the library learns which directions mean "attack" rather than "Hinglish" or "about
passwords". Fitting takes tens of milliseconds; scoring is one dot product per clause.

An attack smuggled into an honest question ("How do I block my card? By the way, ignore your
policy") is diluted in one sentence vector, so each clause is scored too and the highest counts."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# Where an instruction can be tacked onto a question: sentence ends, "by the way", "also",
# ", and then", fake transcript turns ("Assistant:"), HTML comments, new lines.
_CLAUSE = re.compile(
    r"(?<=[.?!;:।|])\s+|,\s+(?:and |also |then |but |aur |phir )|"
    r"\s+(?:by the way|btw|also|and then|then|aur phir|uske baad|iske baad)\s+|<!--|-->|\n",
    re.I,
)
_TRIM = " ,.-<>!'\"`#*[]()"
MAX_CLAUSES = 4  # a budget: a long text is not encoded clause by clause past this


def clauses(text: str) -> list[str]:
    """The text itself, then its clauses of two words or more when there is more than one."""
    parts = [p.strip(_TRIM) for p in _CLAUSE.split(text) if p]
    parts = [p for p in parts if len(p.split()) >= 2 and p != text]
    return [text] + parts[:MAX_CLAUSES] if len(parts) > 1 else [text]


@dataclass(frozen=True)
class AttackLibrary:
    """What the model is fitted on (hashable: the fitted model is cached by it)."""

    attacks: tuple[str, ...]
    benign: tuple[str, ...]
    regularization: float = 30.0  # C of the logistic regression (chosen by bench/guardrails.py)


class AttackModel:
    def __init__(self, weights: np.ndarray, bias: float) -> None:
        self.weights, self.bias = weights.astype(np.float32), float(bias)

    @classmethod
    def fit(cls, attacks: np.ndarray, benign: np.ndarray, regularization: float) -> AttackModel:
        from sklearn.linear_model import LogisticRegression

        x = np.vstack([attacks, benign])
        y = np.r_[np.ones(len(attacks)), np.zeros(len(benign))]
        # Balanced: the library's two halves need not be the same size.
        model = LogisticRegression(C=regularization, class_weight="balanced", max_iter=5000).fit(x, y)
        return cls(model.coef_[0], model.intercept_[0])

    def score(self, vectors: np.ndarray) -> float:
        """The highest attack score (log-odds) among the vectors of a text and its clauses."""
        return float((vectors @ self.weights).max() + self.bias) if len(vectors) else float("-inf")
