"""Stage interfaces over Ray Serve deployment handles, so the core `TurnRunner` runs unchanged
inside the session actor. Each call's `ProviderCall` records come back with its result.

A replica that dies (a crash, a lost node) is replaced by Serve; a call that hit it is sent
again, to a live replica, for up to `REPLICA_RETRY_S` (every stage call is idempotent). A stream
is only repeated if nothing of it came out yet: repeating one half-way would say words twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from ray.exceptions import RayActorError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from samvad.audio import Audio
from samvad.contracts import Passage, Transcript
from samvad.providers.base import AudioChunk, CallLog, ChatRequest, SpeechRequest, TranslationRequest, TranslationResult
from samvad.stages import StageReport


T = TypeVar("T")
REPLICA_RETRY_S = 30.0  # a replacement replica (model load included) starts well within this


def _retrying() -> AsyncRetrying:
    return AsyncRetrying(retry=retry_if_exception_type(RayActorError), stop=stop_after_delay(REPLICA_RETRY_S),
                         wait=wait_exponential_jitter(initial=0.1, max=2.0), reraise=True)


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    async for attempt in _retrying():
        with attempt:
            return await fn()
    raise AssertionError("unreachable")


async def _stream(handle, method: str, arg: Any, calls: CallLog) -> AsyncIterator[Any]:
    # A plain loop, not tenacity: a retry wrapper around `yield` would swallow GeneratorExit.
    deadline, delay = time.monotonic() + REPLICA_RETRY_S, 0.1
    while True:
        started = False
        try:
            async for item in getattr(handle.options(stream=True), method).remote(arg):
                if isinstance(item, StageReport):
                    calls.extend(item.calls)
                else:
                    started = True
                    yield item
            return
        except RayActorError:
            if started or time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(2 * delay, 2.0)


class RemoteSTT:
    def __init__(self, handle) -> None:
        self._h = handle

    async def transcribe(self, audio: Audio, language: str | None, calls: CallLog) -> Transcript:
        transcript, made = await _call(lambda: self._h.transcribe.remote(audio, language))
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
        result, made = await _call(lambda: self._h.translate.remote(request))
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
        return await _call(lambda: self._h.search.remote(query, k))

    async def asimilarity(self, text: str, phrases: list[str]) -> float:
        return await _call(lambda: self._h.similarity.remote(text, phrases))


class RemoteStore:
    """The `MessageStore` (and more) of the Store deployment."""

    def __init__(self, handle) -> None:
        self._h = handle

    def __getattr__(self, method: str):
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await _call(lambda: self._h.call.remote(method, *args, **kwargs))

        return call
