"""The realtime recogniser voice calls stream each utterance to, behind a circuit breaker: while
its socket keeps failing, calls stop opening it for a cooldown and the utterance goes to the REST
recogniser (the ASR stage's failover chain) instead, as it would with no realtime one."""

from __future__ import annotations

from dataclasses import dataclass

from samvad import metrics
from samvad.errors import ProviderError
from samvad.providers.base import OnPartial, RealtimeSpeechToText, SpeechStream
from samvad.providers.breaker import CircuitBreaker


@dataclass
class Listener:
    stt: RealtimeSpeechToText
    breaker: CircuitBreaker

    def open(self, language: str | None, on_partial: OnPartial) -> SpeechStream | None:
        """A stream for one utterance, or None while the circuit is open."""
        return self.stt.open(language, on_partial) if self.breaker.allow() else None

    def succeeded(self) -> None:
        if self.breaker.state != "closed" or self.breaker.failures:
            self.breaker.success()
            metrics.circuit("asr_realtime", self.stt.name, "closed")

    def failed(self, exc: BaseException) -> None:
        # A refused key or quota (not retryable) opens the circuit at once. Its state is on
        # samvad_circuit_state like every provider's, so ops see the socket given up on.
        self.breaker.failure(fatal=isinstance(exc, ProviderError) and not exc.retryable)
        metrics.circuit("asr_realtime", self.stt.name, self.breaker.state)
