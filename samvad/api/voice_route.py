"""The voice WebSocket's admission and wiring (docs/voice-session.md); the call itself is
`samvad.voice.VoiceCall`."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, WebSocket

from samvad.api.context import origin_allowed
from samvad.api.frontend import Frontend
from samvad.audio import Audio
from samvad.contracts import ProviderCall, Transcript
from samvad.errors import InputError, RateLimitedError, SamvadError
from samvad.events import ErrorEvent
from samvad.language import check_language
from samvad.protocol import (
    CLOSE_BAD_START,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_MANY_SESSIONS,
    CLOSE_TRY_LATER,
    CLOSE_UNAUTHORIZED,
    SessionClosing,
    SessionStart,
    SessionStarted,
)
from samvad.storage.repository import ApiKeyRow
from samvad.uncancelled import uncancelled
from samvad.voice import CallSocket, CallState, VoiceCall

router = APIRouter()


async def _refuse(ws: WebSocket, exc: SamvadError) -> None:
    """Close a call that a limit refused (4429) or that could not be checked now (1013, try again
    later: Redis or the database is down), with the error's message as the reason."""
    await ws.close(CLOSE_TOO_MANY_SESSIONS if exc.status == 429 else CLOSE_TRY_LATER, exc.message[:120])


@asynccontextmanager
async def _lease(
    take: Callable[[str], Awaitable[bool]],
    keep: Callable[[str], Coroutine[Any, Any, None]],
    give_back: Callable[[str], Coroutine[Any, Any, None]],
) -> AsyncIterator[bool]:
    """One of the gate's slots (a socket per IP, a live call per key) held, and renewed, for the
    block: yields False when none was free."""
    slot = uuid.uuid4().hex
    if not await take(slot):
        yield False
        return
    renew = asyncio.create_task(keep(slot))
    try:
        yield True
    finally:
        renew.cancel()
        await uncancelled(give_back(slot))  # also when the server cancels the call as it drops


@asynccontextmanager
async def socket_slot(f: Frontend, ws: WebSocket) -> AsyncIterator[str | None]:
    """The client address's request budget taken and one of its socket slots held: yields the
    address, or None when refused (the socket is closed with the reason then)."""
    ip = f.ip(ws)
    try:
        await f.gate.admit_ip(ip)
    except SamvadError as exc:
        await _refuse(ws, exc)
        yield None
        return
    async with _lease(
        lambda slot: f.gate.calls.open_socket(ip, slot),
        lambda slot: f.gate.calls.keep_socket(ip, slot),
        lambda slot: f.gate.calls.close_socket(ip, slot),
    ) as held:
        if not held:
            await ws.close(CLOSE_TOO_MANY_SESSIONS, "too many open sockets from this address")
            yield None
            return
        yield ip


@asynccontextmanager
async def call_slot(f: Frontend, ws: WebSocket, key: ApiKeyRow) -> AsyncIterator[bool]:
    """The key charged for the call (connecting counts as a request) and one of its live-call
    slots held: yields False when refused (the socket is closed with the reason then)."""
    try:
        await f.gate.charge(key)
    except SamvadError as exc:
        await _refuse(ws, exc)
        yield False
        return
    async with _lease(
        lambda slot: f.gate.calls.open_call(key, slot),
        lambda slot: f.gate.calls.keep_call(key, slot),
        lambda slot: f.gate.calls.close_call(key, slot),
    ) as held:
        if not held:
            await ws.close(CLOSE_TOO_MANY_SESSIONS, "too many live sessions for this API key")
            yield False
            return
        f.calls += 1
        try:
            yield True
        finally:
            f.calls -= 1


@router.websocket("/api/v1/voice-session")
async def voice_session(ws: WebSocket) -> None:
    """Streaming voice session. Admission, cheapest check first: origin, the client IP's request
    bucket and failed-key budget, its open-socket cap, then `session.start` within
    `service.ws_auth_timeout_s` with the key (header or message), the key's rate limit, its
    live-call cap."""
    f: Frontend = ws.app.state.frontend
    f.watch_revocations()
    await ws.accept()  # refusals below are close codes a client can act on, not a bare HTTP 403
    origin = ws.headers.get("origin")
    if origin is not None and not origin_allowed(origin, ws.headers.get("host", ""), ws.app):
        # Browsers do not apply CORS to WebSockets: another site's page could open one with the
        # user's key, so foreign origins are refused here.
        await ws.close(CLOSE_FORBIDDEN, "origin not allowed")
        return
    async with socket_slot(f, ws) as ip:
        if ip is not None:
            await _admit_call(f, ws, ip)


async def _admit_call(f: Frontend, ws: WebSocket, ip: str) -> None:
    try:
        raw = await asyncio.wait_for(ws.receive_text(), timeout=f.settings.service.ws_auth_timeout_s)
        if len(raw.encode()) > f.settings.voice.max_text_bytes:
            raise ValueError("session.start too big")
        start = SessionStart.model_validate(json.loads(raw))
    except Exception:  # noqa: BLE001 - a late, malformed or missing opening ends the connection
        await ws.send_text(
            ErrorEvent(
                turn_id="",
                code="bad_start",
                status=400,
                message="the first message must be a valid session.start, sent at once",
            ).model_dump_json()
        )
        await ws.close(CLOSE_BAD_START, "expected session.start")
        return
    if f.closing.is_set():
        await ws.close(CLOSE_SERVICE_RESTART, "server restarting: connect again shortly")
        return
    try:
        key = await f.gate.lookup(ws.headers.get("x-api-key") or start.api_key, ip)
    except SamvadError as exc:
        await _refuse(ws, exc)
        return
    if key is None:
        await ws.close(CLOSE_UNAUTHORIZED, "missing or invalid API key")
        return
    async with call_slot(f, ws, key) as held:
        if held:
            await _call(f, ws, start, key)


async def _call(f: Frontend, ws: WebSocket, start: SessionStart, key: ApiKeyRow) -> None:
    s = f.settings
    try:
        language = check_language(start.language or s.default_language, s.languages)
        kb = s.rag.check_knowledge_base(start.knowledge_base, key.knowledge_bases)
    except InputError as exc:
        # A close reason holds at most 123 bytes, and the language is the client's own text.
        await ws.close(CLOSE_BAD_START, exc.message.encode()[:120].decode(errors="ignore"))
        return
    sid = ws.query_params.get("session_id")
    interrupted = None
    if sid:
        # Checked before the database is asked: a wrong, expired or another key's token costs
        # nothing, and answers exactly like a session that does not exist.
        verdict = f.check_resume(ws.query_params.get("resume_token"), sid, key.id)
        if verdict != "ok":
            await ws.close(
                *(
                    (CLOSE_FORBIDDEN, "resume token expired: start a new session")
                    if verdict == "expired"
                    else (CLOSE_NOT_FOUND, "unknown session")
                )
            )
            return
        try:
            row = await f.db.get_session(sid, key.id)  # another key's session is "unknown"
        except SamvadError:
            await ws.close(CLOSE_NOT_FOUND, "unknown session")
            return
        if row.closed_at is not None:
            await ws.close(CLOSE_NOT_FOUND, "the session is closed")
            return
        try:
            await f.gate.recheck(key, row.knowledge_base)
        except SamvadError as exc:
            await ws.close(CLOSE_FORBIDDEN if exc.status == 403 else CLOSE_UNAUTHORIZED, exc.message[:120])
            return
        messages = await f.db.messages(sid, 2)
        last = messages[-1] if messages else None
        interrupted = last.turn_id if last and last.role == "assistant" and last.status == "interrupted" else None
    else:
        try:
            caps = await f.gate.new_session(key)
            row = await f.db.create_session(
                language,
                start.mode or s.translation.default_mode,
                start.voice,
                key.id,
                start.output_script,
                knowledge_base=kb,
                **caps,
            )
        except SamvadError as exc:
            await _refuse(ws, exc)
            return
        sid = row.id
    session = CallState(
        language=start.language or row.language,
        mode=start.mode or row.mode,
        voice=start.voice or row.voice,
        output_script=start.output_script or row.output_script,
        knowledge_base=row.knowledge_base,
        tenant=str(key.id),
    )
    await ws.send_text(
        SessionStarted(
            session_id=sid,
            resume_token=f.resume_token(sid, key.id),
            resumed=bool(ws.query_params.get("session_id")),
            language=session.language,
            mode=session.mode,
            interrupted_turn=interrupted,
        ).model_dump_json()
    )
    goodbye = SessionClosing(session_id=sid, resume_token=f.resume_token(sid, key.id))
    await run_call(f, key, voice_call(f, ws, sid, key, session, start, goodbye=goodbye))


def voice_call(
    f: Frontend, ws: CallSocket, sid: str, key: ApiKeyRow, session: CallState, start: SessionStart, **extra: Any
) -> VoiceCall:
    """A call on session `sid`: its turns run by the backend, each charged to the key."""
    backend = f.backend

    async def settle(turn_id: str, heard: str, complete: bool) -> None:
        await backend.settle(sid, turn_id, heard, complete)

    async def charge() -> None:
        await f.gate.charge(key)
        await f.gate.recheck(key, session.knowledge_base)  # revoked: the call ends too

    # Work done for a turn not yet taken (early and backchannel transcripts, partials) is charged
    # to the key too, in a bucket of its own: past it the work is skipped, never the turn.
    async def transcribe(audio: Audio, language: str | None) -> tuple[Transcript, list[ProviderCall]]:
        if not await f.gate.charge_speculative(key):
            raise RateLimitedError("speculative ASR over the key's budget: the turn transcribes", 1.0)
        return await backend.transcribe(audio, language)

    async def partial(audio: Audio, language: str | None) -> Transcript | None:
        return await backend.partial(audio, language) if await f.gate.charge_speculative(key) else None

    return VoiceCall(
        ws,
        f.settings,
        session,
        start,
        start_turn=lambda request: backend.stream(sid, request),
        settle=settle,
        transcribe=transcribe,
        closing=f.closing,
        charge=charge,
        partial=partial,
        listener=f.listener,
        **extra,
    )


async def run_call(f: Frontend, key: ApiKeyRow, call: VoiceCall) -> None:
    """Run a call to its end, known to the ingress meanwhile (a revoked key ends it)."""
    f.add_call(key.id, call)
    try:
        await call.run()
    finally:
        f.drop_call(key.id, call)
