"""Sarvam text language identification (/text-lid): language and script of a caller's typed text,
e.g. romanised Hindi is hi-IN + Latn, romanised Tamil ta-IN + Latn. Used for typed turns of a
`language: auto` conversation, to answer in the language (and script) the caller wrote."""

from __future__ import annotations

from samvad.errors import InputError
from samvad.providers.base import CallRecord, LanguageGuess, LanguageIdentifier
from samvad.providers.sarvam.common import http
from samvad.providers.sarvam.config import SarvamSettings

MAX_CHARS = 1000  # the endpoint's limit; the start of a longer text says its language as well
MODEL = "text-lid"  # priced per character (configs: pricing.sarvam."text-lid")


class SarvamLanguageId(LanguageIdentifier):
    name = "sarvam"

    def __init__(self, settings: SarvamSettings) -> None:
        super().__init__(MODEL)
        self._http = http("language_id", settings)

    async def _identify_impl(self, text: str, rec: CallRecord) -> LanguageGuess:
        if not text.strip():
            raise InputError("no text to identify", code="text_empty")
        rec.usage.characters = len(text[:MAX_CHARS])  # what is sent is what is billed
        response = await self._http.request(rec, "POST", "/text-lid", json={"input": text[:MAX_CHARS]})
        body = response.json()
        return LanguageGuess(language_code=body.get("language_code"), script_code=body.get("script_code"))
