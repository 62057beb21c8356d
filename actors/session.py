"""The session actor: one named Ray actor per conversation, wrapping `Conversation`.

Created when a session opens (`get_or_create`), found by name afterwards. It imports no ML
library, so each one is a light process; it talks to the stages through Serve handles. After
`session_idle_seconds` without a turn it exits; its state is already in PostgreSQL, and the
next request re-creates it and rehydrates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import ray
from ray import serve

from actors import telemetry
from actors.conversation import Conversation
from actors.remote import RemoteLLM, RemoteRetriever, RemoteSTT, RemoteStore, RemoteTranslator, RemoteTTS
from samvad.events import TurnEvent
from samvad.settings import Settings
from samvad.turn import Engines, TurnRequest, TurnRunner

NAMESPACE = "samvad"


def actor_name(session_id: str) -> str:
    return f"session:{session_id}"


@ray.remote(num_cpus=0, max_restarts=0)
class SessionActor:
    def __init__(self, session_id: str, settings: dict[str, Any]) -> None:
        telemetry.install()
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))  # turn lines are JSON already
        turn_log = logging.getLogger("samvad.session")
        turn_log.handlers[:] = [handler]
        turn_log.setLevel(logging.INFO)
        turn_log.propagate = False
        s = Settings.model_validate(settings)
        app = s.service.app_name

        def h(name: str):
            return serve.get_deployment_handle(name, app_name=app)

        engines = Engines(
            stt=RemoteSTT(h("ASR")),
            retriever=RemoteRetriever(h("Retriever")),
            llm=RemoteLLM(h("LLM")),
            translator=RemoteTranslator(h("Translation")),
            tts=RemoteTTS(h("TTS")),
        )
        self._conversation = Conversation(session_id, TurnRunner(engines, s), RemoteStore(h("Store")))
        self._idle_seconds = s.service.session_idle_seconds
        self._active = 0
        self._reaper: asyncio.Task | None = None

    async def run_turn(self, request: TurnRequest) -> AsyncIterator[TurnEvent]:
        self._start_reaper()
        # The turn id (the REST request's X-Request-ID) becomes the Serve request id of every
        # stage call this turn makes, so each stage's log lines carry it. The context variable is
        # scoped to this call's task. (Serve has no public setter for it.)
        try:
            from ray.serve.context import _set_request_context

            _set_request_context(request_id=request.turn_id)
        except ImportError:  # pragma: no cover - a Serve without it: stage logs get their own ids
            pass
        self._active += 1
        try:
            async for event in self._conversation.turn(request):
                yield event
        finally:
            self._active -= 1

    async def interrupt(self, turn_id: str, heard_text: str) -> None:
        await self._conversation.mark_interrupted(turn_id, heard_text)

    async def info(self) -> dict[str, Any]:
        self._start_reaper()
        import os

        import psutil

        mem = psutil.Process(os.getpid()).memory_full_info()
        return {
            "session_id": self._conversation.session_id,
            "turns": self._conversation.turns,
            "history": len(self._conversation.history),
            "pid": os.getpid(),
            "rss_bytes": mem.rss,
            "pss_bytes": getattr(mem, "pss", None),
        }

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self._idle_seconds / 2))
            idle = time.monotonic() - self._conversation.last_active
            if self._active == 0 and idle >= self._idle_seconds:
                # Everything is already persisted; killing ourselves frees the name and the process.
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


def get_or_create(session_id: str, settings: dict[str, Any]):
    """The session's actor handle: found by name, or created (detached: it must outlive the
    ingress replica that created it, and exits by itself when idle)."""
    return SessionActor.options(
        name=actor_name(session_id), namespace=NAMESPACE, get_if_exists=True, lifetime="detached"
    ).remote(session_id, settings)
