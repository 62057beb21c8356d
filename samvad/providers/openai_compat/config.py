"""An OpenAI-compatible chat endpoint's settings section, `providers.openai`."""

from __future__ import annotations

from typing import ClassVar

from samvad.providers.vendor import VendorSettings


class OpenAISettings(VendorSettings):
    section: ClassVar[str] = "openai"

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    max_completion_tokens: int = 512
    temperature: float = 0.2
