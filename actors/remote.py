"""Stage interfaces over Ray Serve deployment handles, so the core `TurnRunner` runs unchanged
inside a session host. Each call's `ProviderCall` records come back with its result.

The one retry policy for every call to a deployment (from the ingress and from the session
hosts alike): a replica that dies (a crash, a lost node) is replaced by Serve; a call that hit
it is sent again, to a live replica, for up to `REPLICA_RETRY_S` (every stage call is
idempotent; a session-host call is, by its turn id). A stream is only repeated if nothing of it
came out yet: repeating one half-way would say words twice.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

from ray.exceptions import RayActorError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from samvad.audio import Audio
from samvad.contracts import Passage, Transcript
from samvad.guardrails.attack_model import AttackLibrary
from samvad.providers.base import (
    AudioChunk,
    CallLog,
    ChatRequest,
    LanguageGuess,
    SpeechRequest,
    TranslationRequest,
    TranslationResult,
)
from samvad.stages import StageReport

Handle = Any  # a Serve DeploymentHandle: its methods are the deployment's, untyped

T = TypeVar("T")
REPLICA_RETRY_S = 30.0  # a replacement replica (model load included) starts well within this


# Deployment calls made by this process (a session host reports it: hops per turn).
hops = 0
# Set for a turn answered all at once (REST): the LLM and TTS are called unary, one hop each,
# instead of streamed. A context variable, so it holds for exactly the task running that turn
# (and the tasks it starts), whatever else the host runs at the same time.
UNARY: contextvars.ContextVar[bool] = contextvars.ContextVar("samvad_unary_stages", default=False)


def _replaced(exc: BaseException) -> bool:
    """The replica is gone (dead, or its conversation moved to another host): send it again."""
    return (
        isinstance(exc, RayActorError)
        or getattr(exc, "code", None) == "session_moved"
        or getattr(getattr(exc, "cause", None), "code", None) == "session_moved"
    )


async def call(fn: Callable[[], Awaitable[T]]) -> T:
    """`fn` (one deployment call), sent again while its replica is being replaced."""
    global hops
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(_replaced),
        stop=stop_after_delay(REPLICA_RETRY_S),
        wait=wait_exponential_jitter(initial=0.1, max=2.0),
        reraise=True,
    ):
        with attempt:
            hops += 1
            return await fn()
    raise AssertionError("unreachable")


async def stream(open_stream: Callable[[], AsyncIterator[Any]]) -> AsyncIterator[Any]:
    """The items of a deployment stream, opened again while its replica is being replaced,
    only as long as nothing of it came out yet."""
    # A plain loop, not tenacity: a retry wrapper around `yield` would swallow GeneratorExit.
    global hops
    deadline, delay = time.monotonic() + REPLICA_RETRY_S, 0.1
    while True:
        started = False
        try:
            hops += 1
            async for item in open_stream():
                started = True
                yield item
            return
        except Exception as exc:
            if not _replaced(exc) or started or time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(2 * delay, 2.0)


async def _stream(handle: Handle, method: str, arg: Any, calls: CallLog) -> AsyncIterator[Any]:
    async for item in stream(lambda: getattr(handle.options(stream=True), method).remote(arg)):
        if isinstance(item, StageReport):
            calls.extend(item.calls)
        else:
            yield item


async def _unary(method: Any, arg: Any, calls: CallLog) -> AsyncIterator[Any]:
    items, report = await call(lambda: method.remote(arg))
    calls.extend(report.calls)
    for item in items:
        yield item


class RemoteSTT:
    def __init__(self, handle: Handle) -> None:
        self._h = handle

    async def transcribe(self, audio: Audio, language: str | None, calls: CallLog) -> Transcript:
        transcript, made = await call(lambda: self._h.transcribe.remote(audio, language))
        calls.extend(made)
        return cast(Transcript, transcript)


class RemoteLLM:
    def __init__(self, handle: Handle) -> None:
        self._h = handle

    def stream(self, request: ChatRequest, calls: CallLog) -> AsyncIterator[str]:
        return _unary(self._h.complete, request, calls) if UNARY.get() else _stream(self._h, "stream", request, calls)


class RemoteTranslator:
    def __init__(self, handle: Handle) -> None:
        self._h = handle

    async def translate(self, request: TranslationRequest, calls: CallLog) -> TranslationResult:
        result, made = await call(lambda: self._h.translate.remote(request))
        calls.extend(made)
        return cast(TranslationResult, result)


class RemoteLanguageId:
    """Typed-text language identification, served by the Translation deployment."""

    def __init__(self, handle: Handle) -> None:
        self._h = handle

    async def identify(self, text: str, calls: CallLog) -> LanguageGuess | None:
        guess, made = await call(lambda: self._h.identify.remote(text))
        calls.extend(made)
        return cast(LanguageGuess | None, guess)


class RemoteTTS:
    def __init__(self, handle: Handle) -> None:
        self._h = handle

    def stream(self, request: SpeechRequest, calls: CallLog) -> AsyncIterator[AudioChunk]:
        return _unary(self._h.synthesize, request, calls) if UNARY.get() else _stream(self._h, "stream", request, calls)


class RemoteRetriever:
    def __init__(self, handle: Handle) -> None:
        self._h = handle

    async def alookup(
        self,
        text: str,
        library: AttackLibrary | None,
        k: int,
        query: str | None = None,
        knowledge_base: str | None = None,
    ) -> tuple[float | None, list[Passage]]:
        # The stage holds the same library (from the same guardrails file): only whether to check
        # crosses the wire, not its ~320 phrases (15 KB) on every turn.
        return await call(lambda: self._h.lookup.remote(text, library is not None, k, query, knowledge_base))
