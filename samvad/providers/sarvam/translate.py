"""Sarvam text translation (/translate): mayura:v1 (modes, output scripts) or sarvam-translate:v1."""

from __future__ import annotations

from samvad.errors import InputError
from samvad.providers.base import CallRecord, Capabilities, TranslationRequest, TranslationResult, Translator
from samvad.providers.sarvam.common import CORE_LANGUAGES, http, split_text
from samvad.providers.sarvam.config import SarvamSettings

LIMITS = {"mayura:v1": 1000, "sarvam-translate:v1": 2000}


class SarvamTranslator(Translator):
    name = "sarvam"

    def __init__(self, settings: SarvamSettings) -> None:
        super().__init__(model=settings.translate_model)
        self._s = settings
        self._http = http("translation", settings)
        self.capabilities = Capabilities(languages=CORE_LANGUAGES if settings.translate_model == "mayura:v1" else None)

    async def _translate_impl(self, request: TranslationRequest, rec: CallRecord) -> TranslationResult:
        if request.source_language == request.target_language:
            return TranslationResult(text=request.text, language_code=request.target_language)
        model = self._s.translate_model
        if model == "mayura:v1" and request.target_language not in CORE_LANGUAGES:
            raise InputError(f"mayura:v1 cannot translate to {request.target_language}", code="unsupported_language")
        flags = []
        mode = request.mode
        if model != "mayura:v1" and mode != "formal":
            flags.append(f"mode_unavailable:{mode}")  # only mayura has registers other than formal
            mode = "formal"
        out = []
        for piece in split_text(request.text, LIMITS[model]):
            body = {
                "input": piece,
                "source_language_code": request.source_language,
                "target_language_code": request.target_language,
                "model": model,
                "mode": mode,
                "numerals_format": self._s.numerals_format,
            }
            if self._s.speaker_gender:
                body["speaker_gender"] = self._s.speaker_gender
            if request.output_script and model == "mayura:v1":
                body["output_script"] = request.output_script
            response = await self._http.request(rec, "POST", "/translate", json=body)
            out.append(response.json()["translated_text"])
        return TranslationResult(text=" ".join(out), language_code=request.target_language, flags=flags)
