"""OpenAI-compatible chat completions, streamed over SSE. Sarvam's chat speaks the same protocol,
so `stream_chat` serves both; each provider supplies its auth, path and extra body fields."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from samvad.contracts import ChatMessage, Usage
from samvad.errors import ProviderError
from samvad.providers.base import CallRecord, ChatModel, ChatRequest
from samvad.providers.http import HttpProvider
from samvad.providers.openai_compat.config import OpenAISettings


def render_messages(request: ChatRequest, system_prompt: str) -> list[dict[str, str]]:
    """System prompt with the numbered passages, then the conversation."""
    passages = "\n\n".join(f"[{i + 1}] ({p.source}) {p.text}" for i, p in enumerate(request.passages))
    system = f"{system_prompt}\n\nPassages:\n{passages}" if passages else system_prompt
    return [{"role": "system", "content": system}] + [m.model_dump() for m in request.messages]


def parse_openai_error(body: Any) -> tuple[str, str | None, str | None]:
    err = body["error"]
    return err.get("message", ""), err.get("code") or err.get("type"), err.get("request_id")


CHARS_PER_TOKEN = 4  # a usage estimate when the provider reports none


def _usage(usage: dict[str, Any]) -> Usage:
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return Usage(
        input_tokens=usage.get("prompt_tokens", 0),
        output_tokens=usage.get("completion_tokens", 0),
        cached_tokens=cached,
        reasoning_tokens=reasoning,
    )


def _estimate(body: dict[str, Any], content: int, reasoning: int) -> Usage:
    prompt = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    return Usage(
        input_tokens=-(-prompt // CHARS_PER_TOKEN),
        output_tokens=-(-(content + reasoning) // CHARS_PER_TOKEN),
        reasoning_tokens=-(-reasoning // CHARS_PER_TOKEN),
        estimated=True,
    )


async def stream_chat(http: HttpProvider, rec: CallRecord, path: str, body: dict[str, Any]) -> AsyncIterator[str]:
    """POST a streaming chat request; yield the answer's content deltas. A reasoning model's
    `reasoning_content` is never yielded (never spoken) but counted; `rec.usage` comes from the
    usage chunk, or is estimated from the text when the stream reports none; an answer stopped at
    the token limit (`finish_reason: "length"`) sets `rec.truncated`."""
    content = reasoning = 0
    usage: Usage | None = None
    async with http.stream(rec, "POST", path, json={**body, "stream": True}) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # comments, event:/id: lines, blank separators
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                err = chunk["error"]
                raise ProviderError(
                    f"{http.name} llm stream error: {err.get('message', '')}",
                    provider=http.name,
                    stage="llm",
                    code=err.get("code") or "stream_error",
                )
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                reasoning += len(delta.get("reasoning_content") or "")
                if choice.get("finish_reason") == "length":
                    rec.truncated = True
                if text := delta.get("content"):
                    content += len(text)
                    yield text
    rec.usage = usage or _estimate(body, content, reasoning)


class OpenAICompatChat(ChatModel):
    name = "openai"

    def __init__(self, settings: OpenAISettings, system_prompt: str) -> None:
        super().__init__(model=settings.model)
        self._s = settings
        self._system = system_prompt
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        self._http = HttpProvider(
            "openai",
            "llm",
            settings,
            {"Authorization": f"Bearer {key}"},
            parse_openai_error,
            fatal_codes=frozenset({"insufficient_quota", "invalid_api_key"}),
        )

    def _stream_impl(self, request: ChatRequest, rec: CallRecord) -> AsyncIterator[str]:
        body = {
            "model": self._s.model,
            "messages": render_messages(request, self._system),
            "max_completion_tokens": self._s.max_completion_tokens,
            "temperature": self._s.temperature,
            "stream_options": {"include_usage": True},
        }
        return stream_chat(self._http, rec, "/chat/completions", body)


__all__ = ["ChatMessage", "OpenAICompatChat", "render_messages", "stream_chat"]
