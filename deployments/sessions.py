"""The Sessions deployment: a thin wrapper over `SessionHost` (many conversations per replica),
routed by session id (`actors.router.SessionRouter`). It talks to the stage deployments through
the handles it is given and to PostgreSQL through its own small pool."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psutil
from ray import serve

from actors import remote, telemetry
from actors.host import SessionHost
from actors.remote import RemoteLanguageId, RemoteLLM, RemoteRetriever, RemoteSTT, RemoteTranslator, RemoteTTS
from samvad.events import TurnEvent
from samvad.settings import Settings
from samvad.storage.database import Database
from samvad.turn import Engines, TurnRequest, TurnRunner
from samvad.turn_result import TurnOut


def _turn_log() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))  # turn lines are JSON already
    turn_log = logging.getLogger("samvad.session")
    turn_log.handlers[:] = [handler]
    turn_log.setLevel(logging.INFO)
    turn_log.propagate = False


def _correlate(request: TurnRequest) -> None:
    """The request's correlation id becomes the Serve request id of every stage call this turn
    makes, so each stage's log lines carry it (a context variable scoped to this call's task;
    Serve has no public setter for it)."""
    try:
        from ray.serve.context import _set_request_context

        _set_request_context(request_id=request.request_id or request.turn_id)
    except ImportError:  # pragma: no cover - a Serve without it: stage logs get their own ids
        pass


@serve.deployment(name="Sessions")
class Sessions:
    def __init__(self, settings: dict[str, Any], asr, llm, retriever, translation, tts) -> None:
        telemetry.install()
        _turn_log()
        s = Settings.model_validate(settings)
        engines = Engines(
            stt=RemoteSTT(asr),
            retriever=RemoteRetriever(retriever),
            llm=RemoteLLM(llm),
            translator=RemoteTranslator(translation),
            tts=RemoteTTS(tts),
            language_id=RemoteLanguageId(translation) if s.language_id.provider else None,
        )
        self.db = Database(s, s.sessions.db_pool_size)
        host_id = f"{serve.get_replica_context().replica_id.unique_id}-{uuid.uuid4().hex[:8]}"
        self.host = SessionHost(host_id, TurnRunner(engines, s), self.db, s.sessions)
        self._idempotency_ttl_s = s.service.idempotency_ttl_s
        self._retention_s = s.service.retention_days * 86400 if s.service.retention_days else None
        self._started: asyncio.Task | None = None
        self._janitor: asyncio.Task | None = None

    async def _ready(self) -> SessionHost:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_task(self.host.start())
            self._janitor = asyncio.get_running_loop().create_task(self._expire())
        await asyncio.shield(self._started)
        return self.host

    async def _expire(self) -> None:
        """Every 10 minutes: Idempotency-Key records (and their stored answers) older than their
        TTL go, and conversations past `service.retention_days` (a batch at a time until none)."""
        while True:
            try:
                await self.db.expire_idempotency_keys(self._idempotency_ttl_s)
                while self._retention_s is not None and await self.db.expire_sessions(self._retention_s) > 0:
                    await asyncio.sleep(0.1)  # the next batch after others had the table
            except Exception:  # noqa: BLE001 - the database may be away: next round
                logging.getLogger("samvad.host").warning("expired rows not deleted", exc_info=True)
            await asyncio.sleep(600)

    async def answer(self, session_id: str, request: TurnRequest) -> TurnOut:
        _correlate(request)
        remote.UNARY.set(True)  # answered all at once: no stage needs to stream
        return await (await self._ready()).answer(session_id, request)

    async def stream(self, session_id: str, request: TurnRequest) -> AsyncIterator[list[TurnEvent]]:
        _correlate(request)
        async for batch in (await self._ready()).stream(session_id, request):
            yield batch

    async def settle(self, session_id: str, turn_id: str, heard_text: str, complete: bool) -> None:
        await (await self._ready()).settle(session_id, turn_id, heard_text, complete)

    async def info(self, session_id: str = "") -> dict[str, Any]:
        """This replica's figures; with a session id, those of the replica hosting it."""
        mem = psutil.Process(os.getpid()).memory_full_info()
        import ray

        return (await self._ready()).info() | {
            "pid": os.getpid(),
            "rss_bytes": mem.rss,
            "hops": remote.hops,
            "pss_bytes": getattr(mem, "pss", None),
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    async def check_health(self) -> None:
        if self._started is not None and self._started.done() and self._started.exception() is not None:
            self._started = None  # the database was away at start: try again on the next call

    async def __del__(self) -> None:  # Serve awaits this when it stops the replica
        try:
            await self.host.close()
        finally:
            await self.db.close()
