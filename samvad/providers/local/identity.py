"""Offline translation: no machine-translation model ships in a package, so English passes
through unchanged and any other target is answered in English with a flag saying so."""

from __future__ import annotations

from samvad.providers.base import CallRecord, TranslationRequest, TranslationResult, Translator


def is_english(language: str) -> bool:
    return language.split("-")[0].lower() == "en"


class IdentityTranslator(Translator):
    name = "identity"

    def __init__(self) -> None:
        super().__init__(model="identity")

    async def _translate_impl(self, request: TranslationRequest, rec: CallRecord) -> TranslationResult:
        if is_english(request.target_language) or request.source_language == request.target_language:
            return TranslationResult(text=request.text, language_code=request.target_language)
        return TranslationResult(
            text=request.text,
            language_code=request.source_language,
            flags=[f"translation_unavailable:{request.target_language}"],
        )
