"""One conversation's state machine, plain Python (the Ray actor in `session.py` wraps it).

It serialises turns, keeps the recent history, and persists every user and assistant message
and every provider call before it reports the turn done. A fresh instance rehydrates its
history from the store, so a lost actor loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

from samvad.contracts import ChatMessage, GuardrailFlag, ProviderCall
from samvad.errors import SamvadError, database_down
from samvad.events import ErrorEvent, GuardrailEvent, ResponseDeltaEvent, TranscriptEvent, TurnDoneEvent, TurnEvent
from samvad.guardrails.pii import redact
from samvad.storage.repository import MessageRow
from samvad.turn import TurnRequest, TurnRunner

log = logging.getLogger("samvad.session")


class MessageStore(Protocol):
    async def add_message(
        self, session_id: str, turn_id: str, role: str, content: str, language: str, status: str,
        flags: list[GuardrailFlag] | None = None,
    ) -> None: ...

    async def record_turn(
        self, session_id: str, turn_id: str, calls: list[ProviderCall], content: str, language: str, status: str,
        flags: list[GuardrailFlag] | None = None,
    ) -> None: ...

    async def messages(self, session_id: str, limit: int = 1000) -> list[MessageRow]: ...


class Conversation:
    def __init__(self, session_id: str, runner: TurnRunner, store: MessageStore, history_limit: int = 50) -> None:
        self.session_id = session_id
        self.runner = runner
        self.store = store
        self.history: list[ChatMessage] = []
        self._history_limit = history_limit
        self._loaded = False
        self._lock = asyncio.Lock()
        self.last_active = time.monotonic()
        self.turns = 0

    async def _load(self, turn_id: str) -> None:
        if self._loaded:
            return
        try:
            rows = await self.store.messages(self.session_id, limit=self._history_limit)
        except Exception as exc:
            if not database_down(exc):
                raise
            # The database is restarting: answer now without the earlier context rather than
            # not at all; the history is loaded on a later turn (writes meanwhile are queued).
            log.warning("session %s: history unavailable (database down); answering without it", self.session_id)
            return
        # Only what the caller actually heard or said is context (failed turns are not), and not
        # this turn's own question if it is being run again after the previous actor died.
        self.history = [ChatMessage(role=r.role, content=r.content) for r in rows
                        if r.status != "failed" and r.content and r.turn_id != turn_id]
        self._loaded = True

    async def turn(self, request: TurnRequest) -> AsyncIterator[TurnEvent]:
        async with self._lock:  # one turn at a time per conversation
            self.last_active = time.monotonic()
            try:
                async for event in self._turn(request):
                    yield event
            finally:
                self.last_active = time.monotonic()

    async def _turn(self, request: TurnRequest) -> AsyncIterator[TurnEvent]:
        await self._load(request.turn_id)
        tid = request.turn_id
        try:
            prepared = self.runner.prepare(request.model_copy(update={"history": list(self.history)}))
        except SamvadError as exc:
            yield ErrorEvent(turn_id=tid, code=exc.code, message=exc.message, status=exc.status)
            return
        # Accepted text is persisted before any work is done; identifiers never reach storage.
        user_text = redact(prepared.text) if prepared.text is not None else None
        if user_text is not None:
            await self.store.add_message(self.session_id, tid, "user", user_text, request.language, "complete")
        heard: list[str] = []  # sentences whose audio was completely handed to the caller
        current: str | None = None
        finished = False
        try:
            async for event in self.runner.run_prepared(prepared):
                if isinstance(event, TranscriptEvent) and user_text is None and not event.transcript.text.strip():
                    user_text = ""
                    await self.store.add_message(self.session_id, tid, "user", "", request.language, "failed")
                elif isinstance(event, GuardrailEvent) and user_text is None:
                    user_text = event.redacted_text  # the transcript as stored: identifiers redacted
                    await self.store.add_message(self.session_id, tid, "user", user_text, request.language, "complete")
                elif isinstance(event, ResponseDeltaEvent):
                    if current is not None:  # the previous sentence's audio is all out
                        heard.append(current)
                    current = event.text
                elif isinstance(event, TurnDoneEvent):
                    if current is not None and event.outcome == "complete":
                        heard.append(current)
                    status = "complete" if event.outcome == "complete" else "failed"
                    await self._persist_reply(
                        request, user_text, " ".join(heard), status, event.response.guardrail_flags, event.calls
                    )
                    finished = True
                    self._log_turn(event)
                yield event
        finally:
            if not finished:  # cancelled (barge-in, dropped client): store only what was heard
                if user_text is None:
                    await self.store.add_message(self.session_id, tid, "user", "", request.language, "failed")
                await self._persist_reply(request, user_text, " ".join(heard), "interrupted", [])

    async def mark_interrupted(self, turn_id: str, heard_text: str) -> None:
        """The caller cut this turn's answer short: keep only what they heard (the ingress knows
        what audio it sent), in the store and in the context of the next turn."""
        async with self._lock:
            rows = await self.store.messages(self.session_id, limit=4)
            previous = next((r for r in rows if r.turn_id == turn_id and r.role == "assistant"), None)
            language = previous.language if previous else "en-IN"
            await self.store.add_message(self.session_id, turn_id, "assistant", heard_text, language, "interrupted")
            if previous and previous.content and self.history and self.history[-1].role == "assistant":
                if self.history[-1].content == previous.content:
                    if heard_text:
                        self.history[-1] = ChatMessage(role="assistant", content=heard_text)
                    else:
                        self.history.pop()
            elif heard_text and self.history and self.history[-1].role == "user":
                self.history.append(ChatMessage(role="assistant", content=heard_text))

    async def _persist_reply(
        self, request: TurnRequest, user_text: str | None, text: str, status: str, flags: list[GuardrailFlag],
        calls: list[ProviderCall] | None = None,
    ) -> None:
        await self.store.record_turn(self.session_id, request.turn_id, calls or [], text, request.language, status, flags)
        if status != "failed" and user_text:
            self.history.append(ChatMessage(role="user", content=user_text))
            if text:
                self.history.append(ChatMessage(role="assistant", content=text))
            del self.history[: -self._history_limit]
        self.turns += 1

    def _log_turn(self, done: TurnDoneEvent) -> None:
        """One JSON line per turn. The turn id is the request's correlation id (X-Request-ID)
        for REST turns; no caller text is logged, flags carry check names only."""
        log.info(json.dumps({
            "event": "turn", "request_id": done.turn_id, "session_id": self.session_id, "outcome": done.outcome,
            "language": done.language_code, "first_audio_ms": None if done.first_audio_ms is None else round(done.first_audio_ms, 1),
            "stages_ms": {k: round(v.total_ms, 1) for k, v in done.stages.items()},
            "providers": sorted({f"{c.stage}:{c.provider}" for c in done.calls if c.outcome == "ok"}),
            "retries": sum(c.retries for c in done.calls), "cost": done.cost,
            "guardrails": [f"{f.check}:{f.action}" for f in done.response.guardrail_flags], "flags": done.flags,
        }))
