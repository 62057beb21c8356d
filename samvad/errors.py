"""One error hierarchy for the whole pipeline (DESIGN.md §6.8)."""

from __future__ import annotations

from typing import Any


class SamvadError(Exception):
    """Base error: `code` is stable and machine-readable, `message` tells a client what to do."""

    code = "internal_error"
    status = 500
    retryable = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross Ray process boundaries: keep the instance's code, status and fields.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[SamvadError], message: str, state: dict[str, Any]) -> SamvadError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class InputError(SamvadError):
    """The caller sent something we cannot use; fixing the request fixes it."""

    code = "invalid_input"
    status = 400


class NotFoundError(SamvadError):
    code = "not_found"
    status = 404


class DatabaseUnavailable(SamvadError):
    """PostgreSQL cannot be reached (restart, failover) for longer than reads are retried."""

    code = "database_unavailable"
    status = 503


def database_down(exc: BaseException) -> bool:
    """`exc`, or the error it wraps (Ray wraps a replica's error), is DatabaseUnavailable."""
    return isinstance(exc, DatabaseUnavailable) or isinstance(getattr(exc, "cause", None), DatabaseUnavailable)


class RateLimitedError(SamvadError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderError(SamvadError):
    """A provider (cloud or local engine) failed. `retryable` tells failover what to do."""

    code = "provider_error"
    status = 502

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        stage: str,
        status: int | None = None,
        retryable: bool = False,
        request_id: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after  # seconds the provider asked us to wait
        self.provider = provider
        self.stage = stage
        self.provider_status = status
        self.retryable = retryable
        self.request_id = request_id


def public_message(exc: SamvadError) -> str:
    """What a client is told: a provider's failure says which stage failed and that a retry may
    help; the provider's own text (its internals, sometimes echoes of the request) and engine
    exception names stay in the log and the provider-calls table."""
    if isinstance(exc, ProviderError):
        return f"the {exc.stage} stage failed" + ("; retry shortly" if exc.retryable else "")
    return exc.message
