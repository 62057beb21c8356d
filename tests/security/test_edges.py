"""Attacks on the edge of the running service (the suite's graph behind HAProxy): slow and
half-sent requests, and bodies sent by callers without a key."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.graph import BODY_READ_S, PORT
from tests.security.test_routes import _addr, _client, _error

pytestmark = pytest.mark.e2e
BASE = f"http://127.0.0.1:{PORT}"


def test_a_big_malformed_body_without_a_key_is_refused_on_its_headers(serve_app):
    """6 MB of broken JSON: without a key it is a 401 (admission runs on the headers, so the body
    is never read or parsed), never a 422 that would mean it was."""
    junk = b"{" + b"x" * (6 << 20)
    with _client(None) as c:
        _error(c.post("/api/v1/turn", content=junk, headers={"Content-Type": "application/json"}), 401, "unauthorized")
    with _client("sk_samvad_not-a-key") as c:
        _error(c.post("/api/v1/turn", content=junk, headers={"Content-Type": "application/json"}), 401, "unauthorized")


def test_a_body_that_never_finishes_is_answered_408(api_key):
    async def slow() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        writer.write(
            (
                "POST /api/v1/turn HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"X-API-Key: {api_key}\r\nX-Forwarded-For: {_addr()}\r\nContent-Length: 1000\r\n\r\n"
                '{"text": "'
            ).encode()
        )
        await writer.drain()
        answer = b""
        try:
            async with asyncio.timeout(BODY_READ_S + 15):
                while b'"request_id"' not in answer and (chunk := await reader.read(4096)):
                    answer += chunk
        finally:
            writer.close()
        return answer

    t0 = time.monotonic()
    answer = asyncio.run(slow())
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"request_timeout"' in answer
    assert time.monotonic() - t0 < BODY_READ_S + 10


def test_half_sent_requests_are_dropped_while_others_are_served(api_key):
    """300 connections that send half a request head and then nothing: HAProxy drops every one
    within 30 s (`timeout http-request`), and meanwhile /healthz and a keyed turn answer."""

    async def attack() -> tuple[list[float], list[int]]:
        async def half() -> float:
            reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
            t0 = time.monotonic()
            writer.write(b"POST /api/v1/turn HTTP/1.1\r\nHost: x\r\nContent-Le")
            await writer.drain()
            try:
                while await asyncio.wait_for(reader.read(4096), 40):
                    pass  # HAProxy's 408 page, then the close
            except (ConnectionError, TimeoutError):
                pass
            finally:
                writer.close()
            return time.monotonic() - t0

        async def served() -> list[int]:
            await asyncio.sleep(2)  # every half request is open by now
            async with httpx.AsyncClient(base_url=BASE, timeout=20, headers={"X-Forwarded-For": _addr()}) as c:
                health = await c.get("/healthz")
                turn = await c.post(
                    "/api/v1/turn", json={"text": "How do I block my card?"}, headers={"X-API-Key": api_key}
                )
            return [health.status_code, turn.status_code]

        results = await asyncio.gather(*(half() for _ in range(300)), served())
        return list(results[:-1]), results[-1]

    held, statuses = asyncio.run(attack())
    assert statuses == [200, 200]
    assert max(held) < 30, sorted(held)[-5:]
