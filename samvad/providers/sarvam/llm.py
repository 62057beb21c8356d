"""Sarvam chat completions (OpenAI-compatible SSE at /v1/chat/completions)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from samvad.providers.base import CallRecord, ChatModel, ChatRequest
from samvad.providers.openai_compat.llm import render_messages, stream_chat
from samvad.providers.sarvam.common import http
from samvad.providers.sarvam.config import SarvamSettings


class SarvamChat(ChatModel):
    name = "sarvam"

    def __init__(self, settings: SarvamSettings, system_prompt: str) -> None:
        super().__init__(model=settings.chat_model)
        self._s = settings
        self._system = system_prompt
        self._http = http("llm", settings)

    def _stream_impl(self, request: ChatRequest, rec: CallRecord) -> AsyncIterator[str]:
        body: dict[str, object] = {
            "model": self._s.chat_model,
            "messages": render_messages(request, self._system),
            "max_tokens": self._s.max_tokens,  # its default changed in 2026-04: always send it
            "temperature": self._s.temperature,
        }
        if self._s.reasoning_effort:
            body["reasoning_effort"] = self._s.reasoning_effort
        return stream_chat(self._http, rec, "/v1/chat/completions", body)
