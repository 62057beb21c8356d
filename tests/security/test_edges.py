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


WS = f"ws://127.0.0.1:{PORT}/api/v1/voice-session"


async def _started(api_key: str):
    import json

    import websockets

    ws = await websockets.connect(
        WS, additional_headers={"X-API-Key": api_key, "X-Forwarded-For": _addr()}, max_size=None
    )
    await ws.send(json.dumps({"type": "session.start", "language": "en-IN"}))
    assert json.loads(await ws.recv())["type"] == "session.started"
    return ws


async def _close_code(ws, timeout: float = 10.0) -> tuple[int, str]:
    import websockets

    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("the socket stayed open")


async def test_a_call_sending_far_faster_than_real_time_is_closed_and_memory_stays_flat(api_key):
    from tests.security.test_routes import _peak_rss_kib

    ws = await _started(api_key)
    frame = b"\x00" * 3200  # 100 ms of 16 kHz PCM16
    t0 = time.monotonic()
    try:
        for _ in range(2000):  # 200 s of audio at 20x real time: 10 s, unless closed first
            await ws.send(frame)
            await asyncio.sleep(0.005)
    except Exception:  # noqa: BLE001 - the server closed it mid-send
        pass
    code, reason = await _close_code(ws)
    assert code == 4429 and "ahead of real time" in reason, (code, reason)
    assert time.monotonic() - t0 < 8  # at 20x, 5 s ahead is reached within a second or so

    # Frames far over the limit (12 MiB) are refused before they are read: the socket closes
    # with 1009 and no ingress replica's peak memory grows by what was sent (3 x 12 MiB). First
    # every replica runs a call (its first loads the VAD), so that what is measured is the frames.
    async def warm() -> None:
        w = await _started(api_key)
        for _ in range(10):
            await w.send(frame)
            await asyncio.sleep(0.1)
        await w.close()

    await asyncio.gather(*(warm() for _ in range(4)))
    before = _peak_rss_kib(("Ingress",))
    big = b"\x00" * (12 << 20)
    sockets = [await _started(api_key) for _ in range(3)]
    for s in sockets:
        try:
            await s.send(big)
        except Exception:  # noqa: BLE001
            pass
    codes = [await _close_code(s) for s in sockets]
    assert [c for c, _ in codes] == [1009] * 3, codes
    after = _peak_rss_kib(("Ingress",))
    grown = {pid: after[pid] - before.get(pid, after[pid]) for pid in after}
    assert max(grown.values()) < 12 * 1024, grown  # KiB


async def test_a_flood_of_small_messages_is_closed_and_other_calls_keep_answering(api_key):
    """Three calls flooding pings on the same replicas: each is closed for
    its message rate, and another call's pong comes back within 250 ms meanwhile."""
    import json

    async def flood() -> tuple[int, str]:
        ws = await _started(api_key)
        try:
            for _ in range(5000):
                await ws.send(json.dumps({"type": "ping"}))
        except Exception:  # noqa: BLE001
            pass
        return await _close_code(ws)

    async def quiet() -> list[float]:
        ws = await _started(api_key)
        waits = []
        for _ in range(10):
            await asyncio.sleep(0.1)
            t0 = time.monotonic()
            await ws.send(json.dumps({"type": "ping"}))
            while json.loads(await ws.recv())["type"] != "pong":
                pass
            waits.append(time.monotonic() - t0)
        await ws.close()
        return waits

    *closed, waits = await asyncio.gather(flood(), flood(), flood(), quiet())
    assert all(code == 4429 for code, _ in closed), closed
    assert all("messages a second" in reason for _, reason in closed), closed
    assert max(waits) < 0.25, waits
