"""Sarvam text language identification (/text-lid): language and script of a caller's text, e.g.
romanised Hindi is hi-IN + Latn. Used to pick the reply language when the caller switches."""

from __future__ import annotations

from pydantic import BaseModel

from samvad.errors import InputError
from samvad.providers.base import CallRecord
from samvad.providers.sarvam.common import http
from samvad.settings import SarvamSettings

MAX_CHARS = 1000


class LanguageGuess(BaseModel):
    language_code: str | None
    script_code: str | None


class SarvamLanguageId:
    def __init__(self, settings: SarvamSettings) -> None:
        self._http = http("language_id", settings)

    async def identify(self, text: str, rec: CallRecord | None = None) -> LanguageGuess:
        if not text.strip():
            raise InputError("no text to identify", code="text_empty")
        response = await self._http.request(rec or CallRecord(), "POST", "/text-lid", json={"input": text[:MAX_CHARS]})
        body = response.json()
        return LanguageGuess(language_code=body.get("language_code"), script_code=body.get("script_code"))
