"""A circuit breaker per provider.

A small one rather than pybreaker/aiobreaker: a streamed call only counts as a success when
the stream completes, and an auth failure must open the circuit at once; decorator-style
breakers model neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CircuitBreaker:
    failures_to_open: int = 3
    cooldown_s: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        """Closed: yes. Open: no. Half-open: yes (one trial decides)."""
        return self.state != "open"

    def success(self) -> None:
        self.failures, self.opened_at = 0, None

    def failure(self, *, fatal: bool = False) -> None:
        """`fatal` (bad key, no quota): open now, whatever the count."""
        self.failures += 1
        if fatal or self.failures >= self.failures_to_open or self.state == "half_open":
            self.opened_at = self.clock()
