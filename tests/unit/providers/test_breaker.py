"""The circuit breaker on a fake clock: closed -> open -> half-open -> closed, and the paths
between them (samvad/providers/breaker.py)."""

import pytest

from samvad.providers.breaker import CircuitBreaker

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_it_opens_after_the_configured_failures_and_tries_again_after_the_cooldown():
    clock = Clock()
    b = CircuitBreaker(failures_to_open=3, cooldown_s=30, clock=clock)
    b.failure()
    b.failure()
    assert b.state == "closed" and b.allow()
    b.failure()
    assert b.state == "open" and not b.allow()
    clock.now += 29.9
    assert not b.allow()
    clock.now += 0.2
    assert b.state == "half_open" and b.allow()  # one trial call
    b.success()
    assert b.state == "closed" and b.failures == 0 and b.allow()


def test_a_failed_trial_opens_it_again_for_a_whole_cooldown():
    clock = Clock()
    b = CircuitBreaker(failures_to_open=3, cooldown_s=30, clock=clock)
    for _ in range(3):
        b.failure()
    clock.now += 31
    assert b.state == "half_open"
    b.failure()  # one failure is enough in half-open
    assert b.state == "open"
    clock.now += 29
    assert not b.allow()


def test_a_fatal_failure_opens_it_at_once_and_a_success_resets_the_count():
    clock = Clock()
    b = CircuitBreaker(failures_to_open=3, cooldown_s=30, clock=clock)
    b.failure()
    b.failure()
    b.success()
    b.failure()
    b.failure()
    assert b.state == "closed"  # the success reset the count: 2 in a row, not 4
    b.failure(fatal=True)  # a refused key: no point trying twice
    assert b.state == "open"
