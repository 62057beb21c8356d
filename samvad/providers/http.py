"""Shared HTTP plumbing for cloud providers: one `httpx.AsyncClient` per process and base URL,
per-stage timeouts, retries with tenacity honouring `retry-after-ms` / `retry-after`, and vendor
errors translated into `ProviderError` (never carrying the API key)."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from samvad.errors import ProviderError
from samvad.providers.base import CallRecord
from samvad.providers.vendor import VendorSettings

RETRYABLE_STATUS = {408, 409, 429}
# (message, code, request id) from an error body; each vendor shapes it differently.
ErrorParser = Callable[[Any], tuple[str, str | None, str | None]]
_clients: dict[tuple[str, int], httpx.AsyncClient] = {}


def shared_client(base_url: str) -> httpx.AsyncClient:
    """One pooled client per process, base URL and event loop (httpx clients are loop-bound)."""
    key = (base_url, id(asyncio.get_running_loop()))
    client = _clients.get(key)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            base_url=base_url, limits=httpx.Limits(max_connections=64, max_keepalive_connections=16)
        )
        _clients[key] = client
    return client


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is not None:
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value) if value else None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    return None


class HttpProvider:
    """What a cloud provider module holds: its settings, auth headers and error dialect."""

    def __init__(
        self,
        name: str,
        stage: str,
        settings: VendorSettings,
        auth: dict[str, str],
        parse_error: ErrorParser,
        fatal_codes: frozenset[str] = frozenset(),
    ) -> None:
        self.name, self.stage, self.settings = name, stage, settings
        self._auth = auth
        self._parse_error = parse_error
        self._fatal_codes = fatal_codes  # e.g. quota exhausted: a 429 that no retry fixes
        s = settings
        self.timeout = httpx.Timeout(s.timeout_s, connect=s.connect_timeout_s)

    def _error(self, response: httpx.Response, body: bytes) -> ProviderError:
        try:
            import json

            message, code, request_id = self._parse_error(json.loads(body))
        except (ValueError, TypeError, KeyError, AttributeError):
            message, code, request_id = body[:200].decode("utf-8", "replace") or response.reason_phrase, None, None
        request_id = request_id or response.headers.get("x-request-id")
        status = response.status_code
        retryable = (status in RETRYABLE_STATUS or status >= 500) and code not in self._fatal_codes
        return ProviderError(
            f"{self.name} {self.stage} returned {status}: {message}",
            provider=self.name,
            stage=self.stage,
            status=status,
            retryable=retryable,
            request_id=request_id,
            code=code or f"http_{status}",
            retry_after=retry_after_seconds(response.headers),
        )

    def _transport_error(self, exc: Exception) -> ProviderError:
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
        return ProviderError(
            f"{self.name} {self.stage} {kind} error ({type(exc).__name__})",
            provider=self.name,
            stage=self.stage,
            retryable=True,
            code=f"provider_{kind}",
        )

    def _retrying(self, rec: CallRecord) -> AsyncRetrying:
        s = self.settings
        backoff = wait_exponential_jitter(initial=0.25, max=s.max_retry_wait_s)

        def should_retry(exc: BaseException) -> bool:
            return (
                isinstance(exc, ProviderError)
                and exc.retryable
                and (exc.retry_after is None or exc.retry_after <= s.max_retry_wait_s)  # else fail over now
            )

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, ProviderError) and exc.retry_after is not None:
                return exc.retry_after
            return backoff(state)

        def count(_state: RetryCallState) -> None:
            rec.retries += 1

        return AsyncRetrying(
            stop=stop_after_attempt(s.max_retries + 1),
            retry=retry_if_exception(should_retry),
            wait=wait,
            before_sleep=count,
            reraise=True,
        )

    async def request(self, rec: CallRecord, method: str, path: str, **kwargs: Any) -> httpx.Response:
        client = shared_client(self.settings.base_url)
        async for attempt in self._retrying(rec):
            with attempt:
                try:
                    response = await client.request(method, path, headers=self._auth, timeout=self.timeout, **kwargs)
                except httpx.TransportError as exc:
                    raise self._transport_error(exc) from None
                if response.status_code >= 400:
                    raise self._error(response, response.content)
                return response
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def stream(self, rec: CallRecord, method: str, path: str, **kwargs: Any) -> AsyncIterator[_GuardedResponse]:
        """A streamed response with a 2xx status. Retries happen only before the first byte:
        a stream that breaks midway raises, and the caller decides (failover or error)."""
        client = shared_client(self.settings.base_url)
        async for attempt in self._retrying(rec):
            with attempt:
                try:
                    request = client.build_request(method, path, headers=self._auth, timeout=self.timeout, **kwargs)
                    response = await client.send(request, stream=True)
                except httpx.TransportError as exc:
                    raise self._transport_error(exc) from None
                if response.status_code >= 400:
                    body = await response.aread()
                    await response.aclose()
                    raise self._error(response, body)
        try:
            yield _GuardedResponse(response, self)
        finally:
            await response.aclose()


class _GuardedResponse:
    """Byte/line iteration that turns transport failures midway into `ProviderError`."""

    def __init__(self, response: httpx.Response, provider: HttpProvider) -> None:
        self.response = response
        self._p = provider

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_bytes():
                yield chunk
        except httpx.TransportError as exc:
            raise self._p._transport_error(exc) from None

    async def aiter_lines(self) -> AsyncIterator[str]:
        try:
            async for line in self.response.aiter_lines():
                yield line
        except httpx.TransportError as exc:
            raise self._p._transport_error(exc) from None
