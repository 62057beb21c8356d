"""Failover: an ordered list of providers for one stage, each behind its circuit breaker.

A provider is skipped while its circuit is open or when it cannot handle the language. A
failure before any output moves on to the next provider; a stream that fails after it started
cannot be resumed elsewhere without repeating itself, so that error is raised. The `ProviderCall`
records of every attempt land in the call log, so the turn shows who failed and who served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

from samvad import metrics
from samvad.audio import Audio
from samvad.contracts import Transcript
from samvad.errors import InputError, ProviderError
from samvad.providers.base import (
    AudioChunk,
    CallLog,
    Chat,
    ChatRequest,
    Engine,
    Recognizer,
    Speech,
    SpeechRequest,
    Translation,
    TranslationRequest,
    TranslationResult,
)
from samvad.providers.breaker import CircuitBreaker

T = TypeVar("T")
E = TypeVar("E", bound=Engine)
_FATAL_STATUS = {401, 402, 403}  # bad key or no credits: open the circuit at once


class _Chain(Generic[E]):
    def __init__(self, stage: str, providers: list[E], breakers: dict[str, CircuitBreaker]) -> None:
        self.stage = stage
        self.providers = providers
        self.breakers = breakers

    def candidates(self, language: str | None) -> list[E]:
        out = []
        for p in self.providers:
            langs = p.capabilities.languages
            if language and langs is not None and language not in langs:
                continue
            if self.breakers[p.name].allow():
                out.append(p)
        if not out:
            raise ProviderError(
                f"no {self.stage} provider is available for {language or 'this request'} "
                f"(circuits: {', '.join(f'{p.name}={self.breakers[p.name].state}' for p in self.providers)})",
                provider="none",
                stage=self.stage,
                retryable=True,
                code="providers_unavailable",
            )
        return out

    def _failed(self, provider: E, exc: Exception) -> None:
        status = getattr(exc, "provider_status", None)
        breaker = self.breakers[provider.name]
        breaker.failure(fatal=status in _FATAL_STATUS)
        metrics.circuit(self.stage, provider.name, breaker.state)

    def _served(self, provider: E) -> None:
        breaker = self.breakers[provider.name]
        if breaker.state != "closed" or breaker.failures:
            breaker.success()
            metrics.circuit(self.stage, provider.name, "closed")

    async def call(self, language: str | None, fn: Callable[[E], Awaitable[T]]) -> T:
        last: Exception | None = None
        for p in self.candidates(language):
            try:
                result = await fn(p)
            except (ProviderError, InputError) as exc:
                if isinstance(exc, ProviderError):
                    self._failed(p, exc)
                last = exc
                continue
            self._served(p)
            return result
        raise last  # type: ignore[misc]

    async def stream(self, language: str | None, fn: Callable[[E], AsyncIterator[T]]) -> AsyncIterator[T]:
        last: Exception | None = None
        for p in self.candidates(language):
            started = False
            try:
                async for item in fn(p):
                    started = True
                    yield item
            except (ProviderError, InputError) as exc:
                if isinstance(exc, ProviderError):
                    self._failed(p, exc)
                if started:
                    raise
                last = exc
                continue
            self._served(p)
            return
        raise last  # type: ignore[misc]


class _Fallback(Generic[E]):
    """Failover over the engines of one stage (any `Engine`); a subclass per stage interface."""

    name = "fallback"

    def __init__(self, stage: str, providers: list[E], breakers: dict[str, CircuitBreaker]) -> None:
        self._chain = _Chain(stage, providers, breakers)
        self.stage = providers[0].stage
        self.providers = providers
        self.capabilities = providers[0].capabilities
        self.model = "+".join(p.name for p in providers)


class FallbackSTT(_Fallback[Recognizer]):
    async def transcribe(self, audio: Audio, language: str | None, calls: CallLog) -> Transcript:
        return await self._chain.call(language, lambda p: p.transcribe(audio, language, calls))

    @property
    def offers_partials(self) -> bool:
        return any(p.offers_partials for p in self.providers)

    async def partial(self, audio: Audio, language: str | None) -> Transcript | None:
        """The first candidate that offers one (the local engine, even behind a cloud one); the
        same candidates as a real decode, so an English-only engine makes none for a Hindi call."""
        try:
            candidates = self._chain.candidates(language)
        except ProviderError:
            return None
        for p in candidates:
            if (result := await p.partial(audio, language)) is not None:
                return result
        return None


class FallbackChat(_Fallback[Chat]):
    def stream(self, request: ChatRequest, calls: CallLog) -> AsyncIterator[str]:
        return self._chain.stream(None, lambda p: p.stream(request, calls))


class FallbackTranslator(_Fallback[Translation]):
    async def translate(self, request: TranslationRequest, calls: CallLog) -> TranslationResult:
        return await self._chain.call(request.target_language, lambda p: p.translate(request, calls))


class FallbackTTS(_Fallback[Speech]):
    def stream(self, request: SpeechRequest, calls: CallLog) -> AsyncIterator[AudioChunk]:
        return self._chain.stream(request.language, lambda p: p.stream(request, calls))
