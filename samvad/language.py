"""The caller's language, turn by turn (`language: "auto"`): what the ASR detected in their
speech, or what script their text is written in, and when to trust it.

Indian languages mostly have scripts of their own, so typed text is identified by its letters,
offline and at no cost; Devanagari is Hindi unless the conversation is in Marathi; Latin letters
are English unless enough of the words are common romanised Hindi ("mera card kho gaya"), which
is Hindi answered in Latin script.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Container

from samvad.errors import InputError

AUTO = "auto"


def check_language(language: str, known: Collection[str]) -> str:
    """A language of the service or "auto"; anything else is refused with the list to choose from
    (the one check every route, the voice protocol and the turn use)."""
    if language not in known and language != AUTO:
        raise InputError(
            f"unknown language {language!r}; use one of: {', '.join(sorted(known))}", code="unknown_language"
        )
    return language


# First letter of each Unicode block name -> Samvad's code.
_SCRIPTS = {
    "DEVANAGARI": "hi-IN",
    "BENGALI": "bn-IN",
    "GURMUKHI": "pa-IN",
    "GUJARATI": "gu-IN",
    "ORIYA": "od-IN",
    "TAMIL": "ta-IN",
    "TELUGU": "te-IN",
    "KANNADA": "kn-IN",
    "MALAYALAM": "ml-IN",
    "LATIN": "en-IN",
}
# Frequent romanised Hindi function words: two or more of them (and a fifth of the words) make
# Latin text Hindi. English words that share a spelling ("the", "to", "me", "main") are left out.
_HINGLISH = frozenset(
    """
hai hain tha thi mera meri mere tera teri tumhara aapka aapki apna apni kya kyu kyun kaise kaisa kab kahan
kitna kitni kitne nahi nahin mujhe humein hamein kaun kuch bhi aur lekin par ka ki ke ko se mein ye yeh woh wo
gaya gayi hua hui karna karu karun karein kijiye chahiye sakta sakti sakte raha rahi rahe hoga hogi toh abhi
""".split()
)
_WORDS = re.compile(r"[a-z]+")


def script_of(text: str) -> tuple[str | None, float]:
    """The language whose script most of the letters are in, and that share (0..1)."""
    counts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha():
            block = unicodedata.name(ch, "").split(" ")[0]
            if block in _SCRIPTS:
                counts[block] = counts.get(block, 0) + 1
    total = sum(counts.values())
    if not total:
        return None, 0.0
    block, n = max(counts.items(), key=lambda kv: kv[1])
    return _SCRIPTS[block], n / total


def detect_text(text: str, fallback: str | None = None) -> tuple[str | None, float, bool]:
    """(language, confidence, romanised) of typed text; romanised: Hindi in Latin letters."""
    language, share = script_of(text)
    if language == "en-IN":
        words = _WORDS.findall(text.lower())
        hindi = sum(w in _HINGLISH for w in words)
        if hindi >= 2 and hindi >= len(words) / 5:
            return "hi-IN", round(min(1.0, 0.5 + hindi / max(len(words), 1)), 3), True
    if language == "hi-IN" and fallback == "mr-IN":  # Marathi shares Devanagari: the conversation decides
        language = "mr-IN"
    return language, round(share, 3), False


def devanagari_reading(text: str) -> str | None:
    """Romanised Hindi read back into Devanagari (ITRANS rules), or None for other text.
    Casual spellings come out imperfect ("card" -> "चर्द्"), but the Hindi words land near their
    written form: a multilingual embedder that knows Hindi far better in its own script matches
    the pair (text and reading, averaged) to the right passage more often than either alone."""
    if not detect_text(text)[2]:
        return None
    from indic_transliteration import sanscript

    return str(sanscript.transliterate(text.lower(), sanscript.ITRANS, sanscript.DEVANAGARI))


def choose(
    detected: str | None, confidence: float | None, fallback: str, known: Container[str], min_confidence: float
) -> str:
    """The language to answer in: the detected one when it is one of ours and sure enough."""
    if detected is not None and detected in known and (confidence is None or confidence >= min_confidence):
        return detected
    return fallback
