"""Clean-up that a cancellation must not cut short.

Serve cancels a WebSocket's handler as soon as the client's disconnect arrives (direct ingress,
Ray 2.60), which races with the handler's own end of call: recording what the caller heard,
giving back its slots. It also cancels every deployment call made on behalf of that request,
found through the request context (a context variable). Run such work through `uncancelled`:
it goes to its end in a context of its own, and the cancellation is raised after it."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def uncancelled(work: Coroutine[Any, Any, T]) -> T:
    """`work` awaited to its end even if this task is cancelled (once or more) meanwhile; then
    the cancellation is raised. It runs in a fresh context: what it calls is not taken for part
    of a request being cancelled. A failure of `work` itself is raised as usual."""
    task = asyncio.get_running_loop().create_task(work, context=contextvars.Context())
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError as exc:
            if task.cancelled():  # the work itself was cancelled, not this task
                raise
            cancelled = cancelled or exc
    if cancelled is not None:
        # The cancellation as it came (its message tells a canceller, e.g. anyio's cancel
        # scope, that it is its own).
        raise cancelled
    return result
