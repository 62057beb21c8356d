"""Script-aware sentence splitting, batch and streaming.

No maintained library covers what a voice pipeline needs here: Latin and Indic terminators
(`.`, `?`, `!`, the danda `।` and `॥`), Indian abbreviations ("Rs.", "a/c."), and incremental
use on a token stream (pysbd has no streaming API, no Tamil/Telugu rules, and no release
since 2021). The rules are few, so they live here with their tests.
"""

from __future__ import annotations

import re

# Lower-cased words that end with a dot but do not end a sentence.
ABBREVIATIONS = frozenset(
    {
        "rs",
        "re",
        "inr",
        "e.g",
        "i.e",
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "no",
        "nos",
        "vs",
        "st",
        "approx",
        "a/c",
        "acc",
        "ltd",
        "pvt",
        "co",
        "dept",
        "govt",
        "sr",
        "jr",
        "min",
        "max",
        "est",
        "a.m",
        "p.m",
        "etc.",
        "fig",
        "ref",
        "sec",
        "vol",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    }
)
# A run of terminators, optional closing quotes/brackets, then whitespace: a candidate boundary.
_BOUNDARY = re.compile(r"([.?!।॥]+)([\"'”’)\]]*)(\s+)")


def _is_abbreviation(text: str, dot_index: int) -> bool:
    """True when the '.' at `dot_index` closes an abbreviation or an initial."""
    start = dot_index
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:dot_index].lower().lstrip("(\"'“‘")
    if not word:
        return False
    if word in ABBREVIATIONS or word + "." in ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isalpha():
        # An initial ("Dr. A. Kumar", "A. P. J.") follows a capitalised word or opens the text;
        # after a lower-case word ("section A.") the dot ends the sentence.
        previous = text[:start].split()
        return not previous or previous[-1][:1].isupper()
    return False


def _boundaries(text: str) -> list[int]:
    """End offsets (exclusive, after the whitespace) of every complete sentence in `text`."""
    ends = []
    for m in _BOUNDARY.finditer(text):
        marks = m.group(1)
        if marks == "." and _is_abbreviation(text, m.start(1)):
            continue
        ends.append(m.end())
    return ends


def split_sentences(text: str) -> list[str]:
    """Split a whole text into sentences, whitespace trimmed, empties dropped."""
    out, last = [], 0
    for end in _boundaries(text):
        out.append(text[last:end].strip())
        last = end
    out.append(text[last:].strip())
    return [s for s in out if s]


class SentenceAggregator:
    """Collects streamed text deltas and releases whole sentences as soon as they are complete.

    A sentence is complete when its terminator is followed by whitespace, so the final sentence
    stays buffered until `flush()`.
    """

    def __init__(self) -> None:
        self._buffer = ""

    def push(self, delta: str) -> list[str]:
        self._buffer += delta
        ends = _boundaries(self._buffer)
        if not ends:
            return []
        done, self._buffer = self._buffer[: ends[-1]], self._buffer[ends[-1] :]
        return split_sentences(done)

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer, ""
        return split_sentences(rest)
