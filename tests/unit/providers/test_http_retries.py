"""The shared HTTP plumbing of every cloud provider (samvad/providers/http.py) against
`httpx.MockTransport`: retry-after honoured (in ms, seconds or an HTTP date), a wait longer than
`max_retry_wait_s` failed over at once, retries bounded, non-retryable errors and dropped
connections typed."""

import asyncio
import email.utils
import time

import httpx
import pytest

from samvad.errors import ProviderError
from samvad.providers import http
from samvad.providers.base import CallRecord
from samvad.providers.vendor import VendorSettings

pytestmark = pytest.mark.unit
BASE = "http://vendor.test"


@pytest.fixture(autouse=True)
async def _own_client():
    yield
    client = http._clients.pop((BASE, id(asyncio.get_running_loop())), None)
    if client is not None:
        await client.aclose()


def _provider(responses, **settings) -> tuple[http.HttpProvider, list[float]]:
    """A provider whose process-wide client answers from `responses` in order; returns the
    provider and the times its requests arrived."""
    seen: list[float] = []
    answers = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = httpx.AsyncClient(base_url=BASE, transport=httpx.MockTransport(handler))
    http._clients[(BASE, id(asyncio.get_running_loop()))] = client
    s = VendorSettings(base_url=BASE, **{"max_retries": 2, "max_retry_wait_s": 2.0} | settings)
    parse = lambda body: (body["error"]["message"], body["error"].get("code"), None)  # noqa: E731
    return http.HttpProvider("vendor", "tts", s, {"authorization": "Bearer k"}, parse, frozenset({"no_credits"})), seen


def _error(status: int, code: str = "busy", **headers) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": "try later", "code": code}}, headers=headers)


async def test_retry_after_ms_is_waited_then_the_call_succeeds():
    p, seen = _provider([_error(429, **{"retry-after-ms": "150"}), httpx.Response(200, json={"ok": True})])
    rec = CallRecord()
    response = await p.request(rec, "POST", "/speak", json={})
    assert response.json() == {"ok": True} and rec.retries == 1
    assert seen[1] - seen[0] >= 0.14  # the server's wait, not the backoff's


async def test_a_retry_after_longer_than_the_budget_fails_over_at_once():
    p, seen = _provider([_error(503, **{"retry-after": "120"}), httpx.Response(200)])
    with pytest.raises(ProviderError) as err:
        await p.request(CallRecord(), "POST", "/speak")
    assert len(seen) == 1 and err.value.retryable and err.value.retry_after == 120  # the next provider serves


async def test_retries_are_bounded_and_the_last_error_is_raised():
    p, seen = _provider([_error(500), _error(502), _error(503), httpx.Response(200)], max_retry_wait_s=0.05)
    rec = CallRecord()
    with pytest.raises(ProviderError) as err:
        await p.request(rec, "GET", "/x")
    assert len(seen) == 3 and rec.retries == 2 and err.value.provider_status == 503


@pytest.mark.parametrize("status, code", [(401, "bad_key"), (400, "invalid"), (429, "no_credits")])
async def test_errors_no_retry_can_fix_are_raised_at_once(status, code):
    p, seen = _provider([_error(status, code), httpx.Response(200)])
    with pytest.raises(ProviderError) as err:
        await p.request(CallRecord(), "POST", "/speak")
    assert len(seen) == 1 and not err.value.retryable and err.value.code == code
    assert "Bearer k" not in err.value.message  # the key never travels in an error


async def test_a_dropped_connection_is_a_typed_retryable_error():
    p, seen = _provider([httpx.ConnectError("refused")] * 3, max_retry_wait_s=0.05)
    with pytest.raises(ProviderError) as err:
        await p.request(CallRecord(), "GET", "/x")
    assert len(seen) == 3 and err.value.code == "provider_connection" and err.value.retryable


def test_retry_after_reads_milliseconds_seconds_and_dates():
    assert http.retry_after_seconds(httpx.Headers({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert http.retry_after_seconds(httpx.Headers({"retry-after": "3"})) == 3.0
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= http.retry_after_seconds(httpx.Headers({"retry-after": in_a_minute})) <= 61
    assert http.retry_after_seconds(httpx.Headers({})) is None
