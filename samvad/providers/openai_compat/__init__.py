"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from samvad.providers.openai_compat.config import OpenAISettings
from samvad.providers.vendor import Vendor

if TYPE_CHECKING:
    from samvad.providers.base import Chat
    from samvad.settings import Settings


def _llm(s: Settings, warm_now: bool) -> Chat:
    from samvad.providers.openai_compat.llm import OpenAICompatChat

    return OpenAICompatChat(s.providers.of(OpenAISettings), s.providers.system_prompt)


VENDOR = Vendor("openai", settings=OpenAISettings, llm={"openai": _llm})
