"""A session host: many conversations (virtual actors) in one process, plain Python.

The `Sessions` deployment wraps one per replica; Serve routes every call for a conversation to
the replica that hosts it (`actors.router`). A conversation is activated on its first call
(ownership taken in PostgreSQL, history rehydrated), kept in memory while it is used, and
passivated — dropped from memory and its ownership released — when idle or when the host holds
`max_active` of them (least recently used first).

One live owner per conversation, whatever routing does while replicas come and go: the host
holds a lease (renewed every `lease_ttl_s / 3`), each conversation it activates gets a new
epoch, and every write carries it. A host asked for a conversation another live host owns asks
that host to hand it off and waits; a host whose own lease may have lapsed forgets every
conversation before it serves again, since another host may have taken them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from actors.conversation import Conversation, ConversationStore
from samvad import metrics
from samvad.errors import SamvadError
from samvad.events import TurnEvent
from samvad.settings import SessionTierSettings
from samvad.storage.repository import FencedError
from samvad.turn import TurnRequest, TurnRunner
from samvad.turn_result import TurnOut

log = logging.getLogger("samvad.host")


class HostStore(ConversationStore, Protocol):
    async def heartbeat(self, host_id: str, ttl_s: float) -> list[str]: ...

    async def acquire(self, session_id: str, host_id: str) -> int | None: ...

    async def release(self, session_ids: list[str], host_id: str) -> None: ...

    async def drop_host(self, host_id: str) -> None: ...


class SessionBusy(SamvadError):
    code = "session_busy"
    status = 503
    retryable = True


_END = object()


class SessionHost:
    def __init__(self, host_id: str, runner: TurnRunner, store: HostStore, settings: SessionTierSettings) -> None:
        self.host_id = host_id
        self.runner = runner
        self.store = store
        self.s = settings
        self._active: OrderedDict[str, Conversation] = OrderedDict()  # least recently used first
        self._activating: dict[str, asyncio.Future[Conversation]] = {}
        self._lease_ok_until = 0.0  # monotonic time until which our lease surely holds
        self._maintainer: asyncio.Task[None] | None = None
        self.activations = 0
        self.passivations = 0

    # lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._heartbeat()
        if self._maintainer is None:
            self._maintainer = asyncio.get_running_loop().create_task(self._maintain())

    async def close(self) -> None:
        """Release every conversation at once (a replica stopping): others take them without waiting."""
        if self._maintainer is not None:
            self._maintainer.cancel()
        self._active.clear()
        await self.store.drop_host(self.host_id)

    # the calls ---------------------------------------------------------------------------------
    async def answer(self, session_id: str, request: TurnRequest) -> TurnOut:
        conversation = await self.conversation(session_id)
        with self._fenced(conversation):
            return await conversation.answer(request)

    async def stream(self, session_id: str, request: TurnRequest) -> AsyncIterator[list[TurnEvent]]:
        """A turn's events in batches: whatever is ready when the caller takes the next, so a
        busy host sends fewer, larger messages and an idle one adds no delay."""
        conversation = await self.conversation(session_id)
        queue: asyncio.Queue[TurnEvent | BaseException | object] = asyncio.Queue()

        async def pump() -> None:
            try:
                with self._fenced(conversation):
                    async for event in conversation.turn(request):
                        queue.put_nowait(event)
            except Exception as exc:  # noqa: BLE001 - delivered to the caller, which raises it
                queue.put_nowait(exc)
            finally:
                queue.put_nowait(_END)

        task = asyncio.get_running_loop().create_task(pump())
        try:
            while True:
                batch = [await queue.get()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                end = _END in batch
                events: list[TurnEvent] = []
                for item in batch:
                    if isinstance(item, BaseException):
                        raise item
                    if item is not _END:
                        events.append(item)  # type: ignore[arg-type]  # the queue holds only these
                if events:
                    yield events
                if end:
                    return
        finally:
            if not task.done():  # barge-in or a dropped caller: stop the turn (it records the cut-off)
                task.cancel()
                # Shielded: when the caller died, Serve may cancel this call again while the turn
                # records its cut-off; the turn keeps its conversation's mailbox until it has.
                await asyncio.shield(asyncio.gather(task, return_exceptions=True))

    async def settle(self, session_id: str, turn_id: str, heard_text: str, complete: bool) -> None:
        conversation = await self.conversation(session_id)
        with self._fenced(conversation):
            await conversation.settle(turn_id, heard_text, complete)

    def info(self) -> dict[str, Any]:
        return {
            "host": self.host_id,
            "active": len(self._active),
            "activations": self.activations,
            "passivations": self.passivations,
        }

    # activation ---------------------------------------------------------------------------------
    async def conversation(self, session_id: str) -> Conversation:
        if time.monotonic() > self._lease_ok_until:
            # Our lease may have lapsed (a database outage, a stall): another host may own any
            # of our conversations now. Forget them all; each is re-acquired with a new epoch.
            await self._heartbeat()
            self._forget(list(self._active))
        conversation = self._active.get(session_id)
        if conversation is not None:
            self._active.move_to_end(session_id)
            return conversation
        pending = self._activating.get(session_id)
        if pending is not None:  # one activation per conversation, however many calls wait for it
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._activating[session_id] = future
        try:
            conversation = await self._activate(session_id)
            future.set_result(conversation)
            return conversation
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._activating[session_id]

    async def _activate(self, session_id: str) -> Conversation:
        deadline = time.monotonic() + self.s.handoff_wait_s
        delay = 0.05
        while (epoch := await self.store.acquire(session_id, self.host_id)) is None:
            # Another live host holds it (routing just moved): it was asked to hand it off.
            if time.monotonic() > deadline:
                raise SessionBusy("the conversation is still held by another session host; retry shortly")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        conversation = Conversation(session_id, epoch, self.runner, self.store, self.s.history_limit)
        await conversation.load()
        self._active[session_id] = conversation
        self.activations += 1
        metrics.inc("samvad_conversation_activations_total", event="activated")
        self._passivate_over_limit()
        metrics.gauge("samvad_active_conversations", len(self._active))
        return conversation

    @contextmanager
    def _fenced(self, conversation: Conversation) -> Iterator[None]:
        try:
            yield
        except FencedError:  # another host owns it now: never write for it again
            self._forget([conversation.session_id], release=False)
            raise

    # passivation --------------------------------------------------------------------------------
    def _passivate_over_limit(self) -> None:
        over = len(self._active) - self.s.max_active
        if over <= 0:
            return
        idle = [sid for sid, c in self._active.items() if not c.busy][:over]
        self._forget(idle)

    def _forget(self, session_ids: list[str], *, release: bool = True) -> None:
        gone = [sid for sid in session_ids if self._active.pop(sid, None) is not None]
        self.passivations += len(gone)
        metrics.inc("samvad_conversation_activations_total", len(gone), event="passivated")
        metrics.gauge("samvad_active_conversations", len(self._active))
        if release and gone:
            asyncio.get_running_loop().create_task(self._release(gone))

    async def _release(self, session_ids: list[str]) -> None:
        try:
            await self.store.release(session_ids, self.host_id)
        except Exception:  # noqa: BLE001 - not fatal: a host asking for one gets it by handoff or lease expiry
            log.warning("could not release %d conversations", len(session_ids), exc_info=True)

    async def _heartbeat(self) -> list[str]:
        started = time.monotonic()
        handoffs = await self.store.heartbeat(self.host_id, self.s.lease_ttl_s)
        self._lease_ok_until = started + self.s.lease_ttl_s * 0.8
        return handoffs

    async def _maintain(self) -> None:
        """Renew the lease, hand off what another host asked for, passivate idle conversations."""
        while True:
            await asyncio.sleep(self.s.lease_ttl_s / 3)
            try:
                handoffs = await self._heartbeat()
            except Exception:  # noqa: BLE001 - the database is away: try again next round
                log.warning("session host %s: lease not renewed", self.host_id, exc_info=True)
                continue
            now = time.monotonic()
            idle = [sid for sid, c in self._active.items() if not c.busy and now - c.last_active >= self.s.idle_seconds]
            held = [sid for sid in handoffs if sid in self._active and not self._active[sid].busy]
            missing = [sid for sid in handoffs if sid not in self._active]  # owned in the database, not held here
            if idle or held:
                self._forget(list(dict.fromkeys(idle + held)))
            if missing:
                await self._release(missing)
