"""What every Sarvam call shares: auth header, error dialect, language tables, text splitting."""

from __future__ import annotations

from typing import Any

from samvad.providers.http import HttpProvider
from samvad.providers.sarvam.config import SarvamSettings
from samvad.sentences import split_sentences

# The 11 languages of translate (mayura), TTS and language identification (providers.md §16).
CORE_LANGUAGES = frozenset(
    {"hi-IN", "bn-IN", "gu-IN", "kn-IN", "ml-IN", "mr-IN", "od-IN", "pa-IN", "ta-IN", "te-IN", "en-IN"}
)
# 429 with this code means the credits are gone: retrying cannot help.
FATAL_CODES = frozenset({"insufficient_quota_error", "invalid_api_key_error"})


def parse_error(body: Any) -> tuple[str, str | None, str | None]:
    err = body["error"]
    return err.get("message", ""), err.get("code"), err.get("request_id")


def http(stage: str, settings: SarvamSettings) -> HttpProvider:
    key = settings.api_key.get_secret_value() if settings.api_key else ""
    return HttpProvider("sarvam", stage, settings, {"api-subscription-key": key}, parse_error, FATAL_CODES)


def socket_url(settings: SarvamSettings, path: str) -> str:
    """The WebSocket URL of `path` on the configured base URL (wss for https)."""
    base = settings.base_url.replace("https://", "wss://").replace("http://", "ws://")
    return base.rstrip("/") + path


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at sentence boundaries (at spaces for a sentence
    longer than the limit), so long input is split, not rejected."""
    pieces: list[str] = []
    current = ""
    for sentence in split_sentences(text):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces
