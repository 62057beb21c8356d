"""One conversation as a virtual actor's state, plain Python (a `SessionHost` holds many).

Its own state (recent history, the fencing epoch of this activation), its own mailbox (turns
and settlements run one at a time, in arrival order) and its own lifecycle: built when a host
activates it, rehydrated from PostgreSQL (`load`), dropped when passivated. Every user and
assistant message and every provider call is committed before the turn reports done, and each
write carries the epoch, so a host that lost the conversation cannot change it any more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

from samvad.contracts import ChatMessage, GuardrailFlag, ProviderCall
from samvad.errors import SamvadError
from samvad.events import ErrorEvent, GuardrailEvent, ResponseDeltaEvent, TranscriptEvent, TurnDoneEvent, TurnEvent
from samvad.guardrails.pii import redact
from samvad.language import AUTO
from samvad.storage.repository import MessageRow
from samvad.turn import TurnRequest, TurnRunner
from samvad.turn_result import TurnOut, stored_answer, turn_out

log = logging.getLogger("samvad.session")


class ConversationStore(Protocol):
    async def add_message(
        self,
        session_id: str,
        turn_id: str,
        role: str,
        content: str,
        language: str,
        status: str,
        flags: list[GuardrailFlag] | None = None,
        *,
        epoch: int | None = None,
        language_confidence: float | None = None,
    ) -> None: ...

    async def record_turn(
        self,
        session_id: str,
        turn_id: str,
        calls: list[ProviderCall],
        content: str,
        language: str,
        status: str,
        flags: list[GuardrailFlag] | None = None,
        *,
        epoch: int | None = None,
        response: str | None = None,
    ) -> None: ...

    async def settle(
        self, session_id: str, turn_id: str, content: str, status: str, epoch: int | None = None
    ) -> bool: ...

    async def messages(self, session_id: str, limit: int = 1000) -> list[MessageRow]: ...

    async def idempotent_response(self, session_id: str, turn_id: str) -> str | None: ...


class Conversation:
    __slots__ = (
        "session_id",
        "epoch",
        "runner",
        "store",
        "history",
        "_limit",
        "_lock",
        "last_active",
        "turns",
        "last_language",
    )

    def __init__(
        self, session_id: str, epoch: int, runner: TurnRunner, store: ConversationStore, history_limit: int = 50
    ) -> None:
        self.session_id = session_id
        self.epoch = epoch
        self.runner = runner  # shared by every conversation of the host
        self.store = store
        # (turn id, role, text) of what was said and heard, oldest first
        self.history: list[tuple[str, str, str]] = []
        self._limit = history_limit
        self._lock = asyncio.Lock()  # the mailbox: FIFO, one turn or settlement at a time
        self.last_active = time.monotonic()
        self.turns = 0
        self.last_language: str | None = None  # the language of its last turn: "auto" falls back to it

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def load(self) -> None:
        """Rehydrate: the recent messages the caller said or heard (failed turns are not context)."""
        rows = await self.store.messages(self.session_id, limit=self._limit)
        self.history = [(r.turn_id, r.role, r.content) for r in rows if r.status != "failed" and r.content]
        self.last_language = next((r.language for r in reversed(rows) if r.language != AUTO), None)

    # turns --------------------------------------------------------------------------------------
    async def turn(self, request: TurnRequest) -> AsyncIterator[TurnEvent]:
        async with self._lock:
            self.last_active = time.monotonic()
            try:
                async for event in self._turn(request):
                    yield event
            finally:
                self.last_active = time.monotonic()

    async def answer(self, request: TurnRequest) -> TurnOut:
        """A REST turn's whole answer. With an Idempotency-Key, a turn already answered (its
        answer committed with it) is answered again from the store, not run twice."""
        async with self._lock:
            self.last_active = time.monotonic()
            if request.idempotent and (
                stored := await self.store.idempotent_response(self.session_id, request.turn_id)
            ):
                return TurnOut.model_validate_json(stored)
            events = [event async for event in self._turn(request)]
            self.last_active = time.monotonic()
        return turn_out(self.session_id, request.turn_id, events)

    async def _turn(self, request: TurnRequest) -> AsyncIterator[TurnEvent]:
        tid = request.turn_id
        if request.language == AUTO and request.fallback_language is None:
            request = request.model_copy(update={"fallback_language": self.last_language})
        try:
            prepared = self.runner.prepare(request.model_copy(update={"history": self._context(tid)}))
        except SamvadError as exc:
            yield ErrorEvent(turn_id=tid, code=exc.code, message=exc.message, status=exc.status)
            return
        # Accepted text is committed before any answer goes out; identifiers never reach storage.
        # The write overlaps the turn's first stage (retrieval has no effect to undo) and is
        # awaited before the first sentence of the answer is given out.
        user_text = redact(prepared.text) if prepared.text is not None else None
        # The language the caller used: given, detected from typed text by `prepare`, or from
        # speech by the ASR (its transcript) when the turn's language is "auto".
        language = prepared.request.language
        # How sure the detection was (language "auto" only), stored with the caller's message.
        confidence = prepared.detected[1] if request.language == AUTO and prepared.detected else None
        written = (
            asyncio.ensure_future(self._write_user(request, user_text, "complete", language, confidence))
            if user_text is not None
            else None
        )
        events: list[TurnEvent] = []  # a REST turn's events, for its stored answer
        finished = False
        try:
            async for event in self.runner.run_prepared(prepared):
                if written is not None and isinstance(event, (ResponseDeltaEvent, TurnDoneEvent, ErrorEvent)):
                    await written  # raises if the question could not be stored: nothing is answered
                    written = None
                if isinstance(event, TranscriptEvent) and language == AUTO:
                    language, confidence = event.transcript.language_code, event.transcript.language_confidence
                elif (
                    isinstance(event, TranscriptEvent)
                    and prepared.detected is not None
                    and user_text is not None
                    and event.transcript.language_code != language
                ):
                    # Typed text whose language the cloud identifier corrected: the stored question says so.
                    language, confidence = event.transcript.language_code, event.transcript.language_confidence
                    if written is not None:
                        await written
                        written = None
                    await self._write_user(request, user_text, "complete", language, confidence)
                if isinstance(event, TranscriptEvent) and user_text is None and not event.transcript.text.strip():
                    user_text = ""
                    await self._write_user(request, "", "failed", language, confidence)
                elif isinstance(event, GuardrailEvent) and user_text is None:
                    user_text = event.redacted_text  # the transcript as stored: identifiers redacted
                    await self._write_user(request, user_text, "complete", language, confidence)
                elif isinstance(event, TurnDoneEvent):
                    response = (
                        stored_answer(turn_out(self.session_id, tid, [*events, event])) if request.idempotent else None
                    )
                    await self._record(request, user_text, event, response)
                    finished = True
                    self._log_turn(request, event)
                if request.idempotent:
                    events.append(event)
                yield event
        finally:
            if not finished:  # cancelled (barge-in, a dropped client): the caller heard nothing of it yet
                await self._cut_off(request, user_text, self.last_language if language == AUTO else language)

    def _context(self, turn_id: str) -> list[ChatMessage]:
        # Not this turn's own question if it is being run again (a retry after a host died).
        return [ChatMessage(role=role, content=text) for tid, role, text in self.history if tid != turn_id]

    async def _write_user(
        self, request: TurnRequest, text: str, status: str, language: str, confidence: float | None = None
    ) -> None:
        await self.store.add_message(
            self.session_id,
            request.turn_id,
            "user",
            text,
            language,
            status,
            epoch=self.epoch,
            language_confidence=confidence,
        )

    async def _record(
        self, request: TurnRequest, user_text: str | None, done: TurnDoneEvent, response: str | None
    ) -> None:
        text = done.response.response_text
        ok = done.outcome == "complete"
        # A spoken answer is stored as heard only once the voice call says what was played
        # (`settle`); until then it counts as cut off with nothing heard.
        status, stored = (
            ("complete", text) if ok and request.channel == "rest" else ("interrupted", "") if ok else ("failed", text)
        )
        await self.store.record_turn(
            self.session_id,
            request.turn_id,
            done.calls,
            stored,
            done.language_code,
            status,
            done.response.guardrail_flags,
            epoch=self.epoch,
            response=response,
        )
        self.turns += 1
        self.last_language = done.language_code
        if ok and user_text:
            self._remember(request.turn_id, "user", user_text)
            if status == "complete" and text:
                self._remember(request.turn_id, "assistant", text)

    async def _cut_off(self, request: TurnRequest, user_text: str | None, language: str | None) -> None:
        language = language or request.fallback_language or request.language
        try:
            if user_text is None:
                await self._write_user(request, "", "failed", language)
            await self.store.record_turn(
                self.session_id, request.turn_id, [], "", language, "interrupted", epoch=self.epoch
            )
            if user_text:
                self._remember(request.turn_id, "user", user_text)
        except Exception:  # noqa: BLE001 - the host may be losing the conversation: the next owner rehydrates
            log.warning("session %s: cut-off turn %s not recorded", self.session_id, request.turn_id, exc_info=True)

    # what the caller heard ---------------------------------------------------------------------
    async def settle(self, turn_id: str, heard_text: str, complete: bool) -> None:
        """What the caller heard of a spoken answer, decided by the voice call (it knows what
        audio was played): the whole answer (`complete`) or the part before a barge-in."""
        async with self._lock:
            status = "complete" if complete else "interrupted"
            await self.store.settle(self.session_id, turn_id, heard_text, status, self.epoch)
            if heard_text:
                self._remember(turn_id, "assistant", heard_text)
            else:
                self.history = [h for h in self.history if (h[0], h[1]) != (turn_id, "assistant")]

    def _remember(self, turn_id: str, role: str, text: str) -> None:
        # A turn run again (its first host died) may already be in the rehydrated history.
        self.history = [h for h in self.history if (h[0], h[1]) != (turn_id, role)]
        self.history.append((turn_id, role, text))
        del self.history[: -self._limit]

    def _log_turn(self, request: TurnRequest, done: TurnDoneEvent) -> None:
        """One JSON line per turn with its correlation id (the client's X-Request-ID for REST);
        no caller text is logged, flags carry check names only."""
        log.info(
            json.dumps(
                {
                    "event": "turn",
                    "request_id": request.request_id,
                    "turn_id": done.turn_id,
                    "session_id": self.session_id,
                    "channel": request.channel,
                    "outcome": done.outcome,
                    "language": done.language_code,
                    "language_detected": (
                        done.transcript.language_code if request.language == AUTO and done.transcript else None
                    ),
                    "language_confidence": done.transcript.language_confidence if done.transcript else None,
                    "first_audio_ms": None if done.first_audio_ms is None else round(done.first_audio_ms, 1),
                    "stages_ms": {k: round(v.total_ms, 1) for k, v in done.stages.items()},
                    "providers": sorted({f"{c.stage}:{c.provider}" for c in done.calls if c.outcome == "ok"}),
                    "retries": sum(c.retries for c in done.calls),
                    "cost": done.cost,
                    "guardrails": [f"{f.check}:{f.action}" for f in done.response.guardrail_flags],
                    "flags": done.flags,
                }
            )
        )
