"""Serve's direct-ingress receive (its own class, fed from a server thread as in a replica) with
the client's last messages and its disconnect handed over while the replica's loop is busy: the
race that lost a phone carrier's last mark and its stop."""

import asyncio
import threading
import time

import pytest
from ray.serve._private.direct_ingress_http_util import ASGIDIReceiveProxy

from deployments.ordered_receive import OrderedDisconnect

pytestmark = pytest.mark.unit

LAST = [
    {"type": "websocket.receive", "text": '{"event": "mark"}'},
    {"type": "websocket.receive", "text": '{"event": "stop"}'},
    {"type": "websocket.disconnect", "code": 1000},
]


async def _read_all(wrap: bool) -> list:
    loop = asyncio.get_running_loop()
    incoming = list(LAST)

    async def from_client():
        return incoming.pop(0)

    proxy = ASGIDIReceiveProxy({"type": "websocket"}, from_client, loop)
    handed_over = threading.Event()

    def server_thread():
        asyncio.run(proxy._fetch_until_disconnect())  # Serve runs it on its own loop, as here
        handed_over.set()

    threading.Thread(target=server_thread).start()
    handed_over.wait(5)
    time.sleep(0.05)  # the replica's loop is busy: the hand-overs wait in its queue meanwhile
    return await _read_through(proxy, wrap)


async def _read_through(proxy, wrap: bool = True) -> list:
    """What an app reading until the disconnect gets from `proxy` (through the middleware)."""
    got: list = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            got.append(message)
            if message["type"] == "websocket.disconnect":
                return

    # Awaited here, not in a task of its own: the first read comes before the loop turns.
    await (OrderedDisconnect(app) if wrap else app)({"type": "websocket"}, proxy, None)
    return got


async def test_serve_alone_lets_the_disconnect_overtake_the_last_messages():
    # What the middleware is for: if Serve ever stops losing them, this fails and it can go.
    assert await _read_all(wrap=False) == [LAST[2]]


async def test_the_last_messages_come_before_the_disconnect():
    assert await _read_all(wrap=True) == LAST


async def test_http_passes_through_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["type"], receive))

    async def receive():
        return {"type": "http.request"}

    await OrderedDisconnect(app)({"type": "http"}, receive, None)
    assert seen == [("http", receive)]


async def test_a_disconnect_that_came_in_order_is_given_at_once():
    """The usual case: the disconnect came through the queue, after everything before it, and
    Serve has not noted it yet (another thread does, a moment later). Reading on must not wait
    for it: the queue stays empty."""
    proxy = ASGIDIReceiveProxy({"type": "websocket"}, None, asyncio.get_running_loop())
    for message in LAST:
        proxy.put_message(message)  # handed over; `_disconnect_message` not set yet
    assert await asyncio.wait_for(_read_through(proxy), 2) == LAST
