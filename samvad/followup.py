"""Follow-up questions: what to search the knowledge base for when the caller's words lean on the
conversation ("How do I get a replacement for it?", "What about the PIN?", "Aur agar bhool gaya
toh?"). Such a question is searched together with the question it follows; any other question
is searched as it is, so a change of topic is not pulled back to the old one.

A cloud LLM also gets the conversation itself (the chat history); this is for retrieval, which
sees one query, and for the offline answerer, which sees only the passages.
"""

from __future__ import annotations

import re

# Words that point back at something said before (English and romanised Hindi).
REFERRING = frozenset(
    """
it its itself that this those these them they their theirs same such one ones
iska uska isko usko iske uske isse usse inka unka inko unko wahi yahi waha yaha woh
""".split()
)
# How a question that continues the last one starts ("what about the PIN?", "and at a branch?").
OPENERS = ("what about", "how about", "and ", "also ", "what if", "then ", "but ", "or ", "aur ", "toh ", "phir ")
_WORDS = re.compile(r"[a-z']+")
SHORT = 3  # at most this many words and no subject of its own: "and charges?", "kitna?"


def is_follow_up(text: str) -> bool:
    lowered = text.lower().strip()
    words = _WORDS.findall(lowered)
    if not words:
        return False
    if lowered.startswith(OPENERS) or any(w in REFERRING for w in words):
        return True
    return len(words) <= SHORT


def search_query(text: str, earlier: list[str]) -> str:
    """What to search for: `text`, or — for a follow-up — the question it follows and `text`.
    `earlier` are the caller's previous utterances, oldest first; a chain of follow-ups reaches
    back to the question that named the subject."""
    subject = ""
    for previous in earlier[-3:]:
        subject = f"{subject} {previous}".strip() if subject and is_follow_up(previous) else previous
    if not subject or not is_follow_up(text):
        return text
    return f"{subject} {text}"
