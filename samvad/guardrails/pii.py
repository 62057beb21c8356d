"""Indian personal identifiers in text, written as digits or as spoken number words (the way ASR
transcribes them: "nine eight four…", "नौ आठ", "ek do teen"), and their redaction."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Number words of English, Hindi (Devanagari) and romanised Hindi, as ASR writes them.
DIGIT_WORDS = {
    **{
        w: d
        for d, ws in enumerate(
            [
                ["zero", "oh", "o", "shunya", "shoonya", "शून्य"],
                ["one", "ek", "एक"],
                ["two", "do", "दो"],
                ["three", "teen", "तीन"],
                ["four", "char", "chaar", "चार"],
                ["five", "paanch", "panch", "पांच", "पाँच"],
                ["six", "chhe", "chhah", "che", "छह", "छः"],
                ["seven", "saat", "सात"],
                ["eight", "aath", "आठ"],
                ["nine", "nau", "नौ"],
            ]
        )
        for w in ws
    },
}
MULTIPLIERS = {"double": 2, "triple": 3}
_TOKEN = re.compile(r"[^\s,.;:!?()\-]+")

# Verhoeff tables (Aadhaar's check digit).
_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def verhoeff_valid(number: str) -> bool:
    c = 0
    for i, ch in enumerate(reversed(number)):
        c = _D[c][_P[i % 8][int(ch)]]
    return c == 0


def luhn_valid(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class Match:
    kind: str  # aadhaar, pan, phone, card, upi, ifsc, account, email
    start: int
    end: int


ACCOUNT_WORDS = re.compile(r"\b(account|a/c|acct|khata|खाता|acc(?:ount)? no)\b", re.I)
PATTERNS = [
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("upi", re.compile(r"\b[\w.-]{2,}@(?!\w+\.)[a-z][a-z0-9]{1,}\b", re.I)),
    ("pan", re.compile(r"\b[A-Z]{5}[0-9]{4}[A-Z]\b", re.I)),
    ("ifsc", re.compile(r"\b[A-Z]{4}0[A-Z0-9]{6}\b", re.I)),
]


def _digit_runs(text: str) -> list[tuple[str, int, int]]:
    """(digits, start, end) for every run of digits and number words, spaces and hyphens
    allowed inside ("98400 12345", "nine eight four double zero")."""
    runs: list[tuple[str, int, int]] = []
    digits, start, end, repeat = "", None, 0, 1
    # Tokens split at spaces and punctuation (hyphens too: "98401-23456"); Devanagari words keep
    # their vowel signs, which a \w-based pattern would cut off.
    for m in _TOKEN.finditer(text):
        tok = m.group().lower().lstrip("+")
        value = tok if tok.isdigit() and tok.isascii() else (str(DIGIT_WORDS[tok]) if tok in DIGIT_WORDS else None)
        if value is not None:
            start = m.start() if start is None else start
            digits += value * repeat
            repeat, end = 1, m.end()
        elif tok in MULTIPLIERS:  # "double zero"
            start = m.start() if start is None else start
            repeat = MULTIPLIERS[tok]
        else:
            if digits and start is not None:
                runs.append((digits, start, end))
            digits, start, repeat = "", None, 1
    if digits and start is not None:
        runs.append((digits, start, end))
    return runs


def find_pii(text: str) -> list[Match]:
    found: list[Match] = []
    for kind, pattern in PATTERNS:
        for m in pattern.finditer(text):
            if kind == "upi" and any(f.kind == "email" and f.start <= m.start() < f.end for f in found):
                continue
            found.append(Match(kind, m.start(), m.end()))
    for digits, start, end in _digit_runs(text):
        n = len(digits)
        phone = digits[-10:] if n in (10, 11, 12) and (n == 10 or digits[: n - 10] in ("0", "91")) else None
        if n == 12 and digits[0] in "23456789" and verhoeff_valid(digits):
            found.append(Match("aadhaar", start, end))
        elif phone and phone[0] in "6789":
            found.append(Match("phone", start, end))
        elif 13 <= n <= 19 and luhn_valid(digits):
            found.append(Match("card", start, end))
        elif 9 <= n <= 18 and ACCOUNT_WORDS.search(text[max(0, start - 40) : start]):
            found.append(Match("account", start, end))
    return sorted(found, key=lambda m: m.start)


def redact(text: str, matches: list[Match] | None = None) -> str:
    """Replace each identifier with its kind in brackets, e.g. "[AADHAAR]"."""
    out, last = [], 0
    for m in matches if matches is not None else find_pii(text):
        if m.start < last:
            continue
        out.append(text[last : m.start])
        out.append(f"[{m.kind.upper()}]")
        last = m.end
    out.append(text[last:])
    return "".join(out)
