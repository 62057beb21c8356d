"""Stage interfaces over Ray Serve deployment handles, so the core `TurnRunner` runs unchanged
inside the session actor. Each call's `ProviderCall` records come back with its result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from samvad.audio import Audio
from samvad.contracts import Passage, Transcript
from samvad.providers.base import AudioChunk, CallLog, ChatRequest, SpeechRequest, TranslationRequest, TranslationResult
from samvad.stages import StageReport


async def _stream(handle, method: str, arg: Any, calls: CallLog) -> AsyncIterator[Any]:
    async for item in getattr(handle.options(stream=True), method).remote(arg):
        if isinstance(item, StageReport):
            calls.extend(item.calls)
        else:
            yield item


class RemoteSTT:
    def __init__(self, handle) -> None:
        self._h = handle

    async def transcribe(self, audio: Audio, language: str | None, calls: CallLog) -> Transcript:
        transcript, made = await self._h.transcribe.remote(audio, language)
        calls.extend(made)
        return transcript


class RemoteLLM:
    def __init__(self, handle) -> None:
        self._h = handle

    def stream(self, request: ChatRequest, calls: CallLog) -> AsyncIterator[str]:
        return _stream(self._h, "stream", request, calls)


class RemoteTranslator:
    def __init__(self, handle) -> None:
        self._h = handle

    async def translate(self, request: TranslationRequest, calls: CallLog) -> TranslationResult:
        result, made = await self._h.translate.remote(request)
        calls.extend(made)
        return result


class RemoteTTS:
    def __init__(self, handle) -> None:
        self._h = handle

    def stream(self, request: SpeechRequest, calls: CallLog) -> AsyncIterator[AudioChunk]:
        return _stream(self._h, "stream", request, calls)


class RemoteRetriever:
    def __init__(self, handle) -> None:
        self._h = handle

    async def asearch(self, query: str, k: int) -> list[Passage]:
        return await self._h.search.remote(query, k)

    async def asimilarity(self, text: str, phrases: list[str]) -> float:
        return await self._h.similarity.remote(text, phrases)


class RemoteStore:
    """The `MessageStore` (and more) of the Store deployment."""

    def __init__(self, handle) -> None:
        self._h = handle

    def __getattr__(self, method: str):
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._h.call.remote(method, *args, **kwargs)

        return call
