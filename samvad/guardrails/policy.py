"""The guardrail policy (configs/guardrails.yaml) and the checks it drives.

Every check is a small function of the text returning flags; flags never carry the raw text
of a personal identifier, only its kind, so they are safe to log, store and count."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from samvad.contracts import GuardrailFlag, Passage
from samvad.guardrails.attack_model import AttackLibrary
from samvad.guardrails.pii import find_pii, redact

Action = Literal["allow", "redact", "refuse", "escalate"]


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    action: Action = "allow"


class PatternCheck(_Check):
    patterns: list[str] = []

    @cached_property
    def compiled(self) -> list[re.Pattern[str]]:
        return [re.compile(p, re.I) for p in self.patterns]

    def hit(self, text: str) -> bool:
        return self.enabled and any(p.search(text) for p in self.compiled)


class InjectionCheck(PatternCheck):
    # The embedding half (samvad.guardrails.attack_model): a classifier fitted on `library`, a
    # YAML file of `attacks` and honest `benign` questions next to the policy file. A question
    # whose score (log-odds; of it or of any clause) reaches `threshold` is refused. Both numbers
    # are chosen on the tuning half of tests/data/injection_cases.yaml by bench/guardrails.py.
    threshold: float = 1.65
    regularization: float = 100.0
    library: str | None = None
    known_attacks: list[str] = []
    benign_examples: list[str] = []

    @cached_property
    def attack_library(self) -> AttackLibrary | None:
        """What the Retriever fits its model on (None: the embedding half is off)."""
        if not (self.enabled and self.known_attacks and self.benign_examples):
            return None
        return AttackLibrary(tuple(self.known_attacks), tuple(self.benign_examples), self.regularization)


class AbuseCheck(_Check):
    words: dict[str, list[str]] = {}

    @cached_property
    def compiled(self) -> re.Pattern[str]:
        words = sorted({w.lower() for ws in self.words.values() for w in ws}, key=len, reverse=True)
        return re.compile(r"(?<!\w)(" + "|".join(map(re.escape, words)) + r")(?!\w)", re.I)

    def hit(self, text: str) -> bool:
        return self.enabled and bool(self.words) and bool(self.compiled.search(text))


class OffTopicCheck(_Check):
    min_retrieval_score: float = 0.22


class GroundingCheck(_Check):
    min_support: float = 0.5
    on_fail: Literal["drop", "fallback"] = "drop"


class InputPolicy(BaseModel):
    pii: _Check = _Check(action="redact")
    injection: InjectionCheck = InjectionCheck(action="refuse")
    abuse: AbuseCheck = AbuseCheck(action="refuse")
    human_agent: PatternCheck = PatternCheck(action="escalate")
    off_topic: OffTopicCheck = OffTopicCheck(action="refuse")


class OutputPolicy(BaseModel):
    pii: _Check = _Check(action="redact")
    blocked_topics: PatternCheck = PatternCheck(action="refuse")
    grounding: GroundingCheck = GroundingCheck()


class Replies(BaseModel):
    injection: str
    abuse: str
    human_agent: str
    off_topic: str
    fallback: str
    # The knowledge base cannot be searched (its store is down): the turn says so rather than
    # failing or letting the model answer without its documents.
    retrieval_unavailable: str = "I am unable to look that up right now. Please try again in a few minutes, or ask for a customer care executive."


class InputVerdict(BaseModel):
    text: str  # what the rest of the turn may see: identifiers redacted
    flags: list[GuardrailFlag] = []
    action: Action = "allow"
    reply: str | None = None  # set when the turn answers with a refusal or an escalation


class OutputVerdict(BaseModel):
    text: str | None  # None: do not speak this sentence
    flags: list[GuardrailFlag] = []


_STOP = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been it its this that these those "
    "you your yours we our us they them their can could will would should may might must do does did have has had "
    "not no yes i me my so than then there here what which who whom when where why how also any all each per into "
    "about over under more most such only own same very just".split()
)
_WORD = re.compile(r"[^\W_]+", re.U)


def support(sentence: str, passages: list[Passage]) -> float:
    """Share of the sentence's content words that appear in the passages (lexical grounding:
    cheap enough to run on every sentence before it is spoken)."""
    words = [w for w in _WORD.findall(sentence.lower()) if w not in _STOP and len(w) > 2]
    if not words:
        return 1.0
    vocabulary = set(_WORD.findall(" ".join(p.text for p in passages).lower()))
    return sum(w in vocabulary for w in words) / len(words)


class Guardrails(BaseModel):
    input: InputPolicy = InputPolicy()
    output: OutputPolicy = OutputPolicy()
    replies: Replies

    @classmethod
    def from_file(cls, path: str | Path) -> Guardrails:
        path = Path(path)
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        injection = raw.get("input", {}).get("injection", {})
        if injection.get("library"):  # the classifier's examples, next to the policy file
            library = yaml.safe_load((path.parent / injection["library"]).read_text(encoding="utf-8")) or {}
            injection["known_attacks"] = [*injection.get("known_attacks", []), *library.get("attacks", [])]
            injection["benign_examples"] = [*injection.get("benign_examples", []), *library.get("benign", [])]
        return cls.model_validate(raw)

    def check_input(self, text: str) -> InputVerdict:
        p, flags = self.input, []
        matches = find_pii(text) if p.pii.enabled else []
        if matches:
            kinds = sorted({m.kind for m in matches})
            flags.append(GuardrailFlag(check="pii", severity="high", action="redact", detail=",".join(kinds)))
            text = redact(text, matches)
        for name, check, severity in (
            ("injection", p.injection, "high"),
            ("abuse", p.abuse, "medium"),
            ("human_agent", p.human_agent, "info"),
        ):
            if check.hit(text):
                flags.append(GuardrailFlag(check=name, severity=severity, action=check.action))
                if check.action in ("refuse", "escalate"):
                    return InputVerdict(text=text, flags=flags, action=check.action, reply=getattr(self.replies, name))
        return InputVerdict(text=text, flags=flags)

    def check_attack_score(self, score: float | None) -> InputVerdict | None:
        """The embedding half of the injection check, on the score the Retriever computed (where
        the embedder lives) for the question and its clauses."""
        c = self.input.injection
        if not c.enabled or score is None or score < c.threshold:
            return None
        flag = GuardrailFlag(
            check="injection",
            severity="high",
            action=c.action,
            detail=f"classified as an attack (score {score:.2f}, threshold {c.threshold:.2f})",
        )
        return InputVerdict(text="", flags=[flag], action=c.action, reply=self.replies.injection)

    def check_retrieval(self, passages: list[Passage]) -> InputVerdict | None:
        """Off topic when even the best passage is far from the question."""
        c = self.input.off_topic
        best = max((p.score for p in passages), default=0.0)
        if c.enabled and best < c.min_retrieval_score:
            flag = GuardrailFlag(check="off_topic", severity="low", action=c.action, detail=f"best score {best:.2f}")
            return InputVerdict(text="", flags=[flag], action=c.action, reply=self.replies.off_topic)
        return None

    def check_output(self, sentence: str, passages: list[Passage]) -> OutputVerdict:
        o, flags = self.output, []
        if o.blocked_topics.hit(sentence):
            flags.append(GuardrailFlag(check="blocked_topic", severity="high", action="refuse"))
            return OutputVerdict(text=None, flags=flags)
        if o.grounding.enabled and passages:
            score = support(sentence, passages)
            if score < o.grounding.min_support:
                flags.append(
                    GuardrailFlag(check="grounding", severity="medium", action="refuse", detail=f"support {score:.2f}")
                )
                return OutputVerdict(text=None if o.grounding.on_fail == "drop" else self.replies.fallback, flags=flags)
        if o.pii.enabled and (matches := find_pii(sentence)):
            flags.append(
                GuardrailFlag(
                    check="pii_output",
                    severity="high",
                    action="redact",
                    detail=",".join(sorted({m.kind for m in matches})),
                )
            )
            sentence = redact(sentence, matches)
        return OutputVerdict(text=sentence, flags=flags)
