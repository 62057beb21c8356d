"""A WebSocket client's last messages before it closes, received before its disconnect.

In Serve's direct-ingress mode (HAProxy in front, as Samvad runs), an ingress replica's ASGI
`receive` is fed from the server's own thread: each message is handed to the replica's loop
with `call_soon_threadsafe`, but the disconnect is also noted at once, and `receive` answers
with that disconnect whenever its queue is empty, even while the messages before it are still
on their way (Ray 2.60's `ASGIDIReceiveProxy`). A phone carrier that echoes a mark and hangs up
at once would lose the mark (what the caller heard) and its stop message.

On a disconnect, this middleware lets the loop take in what was handed over (it was scheduled
before the disconnect was noted) and reads what is queued; the disconnect is given once those
are read. Each read after the disconnect is bounded: when nothing overtook it, the queue stays
empty and Serve's receive may wait on it (until it notices the disconnect it already gave)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

# A client cannot have more in flight than the replica's queue held; a bound all the same.
MAX_OVERTAKEN = 10_000
QUEUED_WITHIN_S = 0.05  # a message handed over before the disconnect is queued by then


class OrderedDisconnect:
    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        overtaken: deque[Message] = deque()
        disconnect: Message | None = None

        async def ordered() -> Message:
            nonlocal disconnect
            if overtaken:
                return overtaken.popleft()
            if disconnect is not None:
                return disconnect
            message = await receive()
            if message["type"] != "websocket.disconnect":
                return message
            await asyncio.sleep(0)  # the messages handed over before the disconnect land now
            while len(overtaken) < MAX_OVERTAKEN:
                try:
                    following = await asyncio.wait_for(receive(), QUEUED_WITHIN_S)
                except TimeoutError:
                    break  # nothing was queued behind it
                if following["type"] == "websocket.disconnect":
                    break
                overtaken.append(following)
            disconnect = message
            return overtaken.popleft() if overtaken else disconnect

        await self.app(scope, ordered, send)
