"""The REST routes: plain functions over the `Frontend` that the ingress puts in `app.state`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any, cast

import httpx
from fastapi import APIRouter, Depends, File, Form, Header, Request, Security, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from starlette.requests import HTTPConnection

from samvad import metrics
from samvad.api.frontend import Frontend
from samvad.api.models import ErrorOut, SessionBody, TtsBody, TurnBody
from samvad.audio import decode_audio, wav_bytes
from samvad.errors import InputError, NotFoundError, SamvadError
from samvad.language import AUTO
from samvad.providers.base import SpeechRequest
from samvad.stages import StageReport
from samvad.storage.repository import ApiKeyRow, MessageRow, SessionRow
from samvad.turn import TurnRequest, prepare_turn
from samvad.turn_result import TurnOut

STATIC = Path(__file__).resolve().parent / "static"

ERRORS = (400, 401, 404, 409, 413, 415, 422, 429)
RESPONSES: dict[int | str, dict[str, Any]] = {status: {"model": ErrorOut} for status in ERRORS}
IDEMPOTENCY = Header(
    None,
    alias="Idempotency-Key",
    max_length=255,
    description="the same key returns the same result: retry safely after a dropped connection",
)
# Declared as the API's security scheme, so /docs' "Authorize" sends it with "Try it out".
API_KEY = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="ApiKey", description="an API key made with `samvad keys create`"
)

router = APIRouter()


class SessionClosed(SamvadError):
    code = "session_closed"
    status = 409


async def frontend(conn: HTTPConnection) -> Frontend:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop (and at times
    # a thread start) on every request for an attribute read.
    front: Frontend = conn.app.state.frontend
    return front


async def caller(request: Request, key: str | None = Security(API_KEY)) -> ApiKeyRow:
    # Admitted on the headers, before the body was read (samvad.api.context); `Security` only
    # declares the header for /docs.
    row: ApiKeyRow | None = getattr(request.state, "api_key", None)
    return row if row is not None else await (await frontend(request)).auth(request, key)


def _idempotency_hash(route: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([route, body], sort_keys=True, default=str).encode()).hexdigest()


@router.get("/", include_in_schema=False)
async def demo_page() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> FileResponse:
    path = (STATIC / name).resolve()
    if path.parent != STATIC or not path.is_file():
        raise NotFoundError(f"no file {name!r}")
    return FileResponse(path)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorOut}})
async def readyz(f: Frontend = Depends(frontend)) -> dict[str, str]:
    """Ready when the database answers (checked at most once a second)."""
    await f.ready()
    return {"status": "ready"}


@router.get("/metrics", response_class=PlainTextResponse, responses={401: {"model": ErrorOut}})
async def metrics_route(request: Request, f: Frontend = Depends(frontend)) -> Response:
    """Samvad's and Ray Serve's metrics for this node, from every process on it (relayed from
    Ray's metrics agent; Prometheus on a cluster scrapes each node's agent directly). Cheap to
    ask: the address's request bucket is taken, and the agent is read at most once a second per
    replica (a flood of scrapes is one read)."""
    await f.gate.admit_ip(f.ip(request))

    async def read() -> str:
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                r = await client.get(f.backend.metrics_url())
                r.raise_for_status()
        except httpx.HTTPError:
            raise SamvadError("the node's metrics agent did not answer", code="metrics_unavailable") from None
        return metrics.select_families(r.text)

    return PlainTextResponse(await f.metrics_text(read), media_type="text/plain; version=0.0.4")


@router.post("/api/v1/tts", responses={200: {"content": {"audio/wav": {}}}, **RESPONSES})
async def tts_route(body: TtsBody, key: ApiKeyRow = Depends(caller), f: Frontend = Depends(frontend)) -> Response:
    """Text to speech: returns a WAV file. `X-Cache: hit` when served from the Redis cache."""
    if f.language(body.language) == AUTO:
        raise InputError("say which language to speak: auto is for what callers say", code="unknown_language")
    pcm, rate, hit = [], 0, False
    async for item in f.backend.synthesize(
        SpeechRequest(text=body.text, language=body.language, voice=body.voice, tenant=str(key.id))
    ):
        if isinstance(item, StageReport):
            hit = item.cache_hit
        else:
            pcm.append(item.pcm16)
            rate = item.sample_rate
    metrics.inc("samvad_cache_total", stage="tts_api", result="hit" if hit else "miss")
    return Response(
        wav_bytes(b"".join(pcm), rate), media_type="audio/wav", headers={"X-Cache": "hit" if hit else "miss"}
    )


@router.post("/api/v1/asr", responses=RESPONSES)
async def asr_route(
    file: UploadFile = File(..., description="WAV/FLAC/OGG audio"),
    language: str = Form("en-IN"),
    key: ApiKeyRow = Depends(caller),
    f: Frontend = Depends(frontend),
) -> dict[str, Any]:
    """Speech to text: returns the transcript payload."""
    f.language(language)
    a = f.settings.audio
    # Off the event loop: it also runs this replica's live calls, which must not wait on a decode.
    audio = await asyncio.to_thread(
        decode_audio, await file.read(), target_rate=a.sample_rate, max_seconds=a.max_seconds, min_seconds=a.min_seconds
    )
    transcript, _ = await f.backend.transcribe(audio, None if language == AUTO else language)
    return transcript.model_dump()


@router.post("/api/v1/sessions", status_code=201, responses=RESPONSES)
async def create_session(
    body: SessionBody,
    idempotency_key: str | None = IDEMPOTENCY,
    key: ApiKeyRow = Depends(caller),
    f: Frontend = Depends(frontend),
) -> SessionRow:
    """Open a session (one database insert: its conversation is activated on first use)."""
    args = {
        "language": f.language(body.language or f.settings.default_language),
        "mode": body.mode or f.settings.translation.default_mode,
        "voice": body.voice,
        "output_script": body.output_script,
        "knowledge_base": f.settings.rag.check_knowledge_base(body.knowledge_base, key.knowledge_bases),
    }
    if idempotency_key is None:
        return cast(SessionRow, await f.db.create_session(**args, api_key_id=key.id, **await f.gate.new_session(key)))
    request_hash = _idempotency_hash("sessions", args)
    # A retry is recognised before it is charged: it opens no new session.
    claim = await f.db.find_claim(key.id, idempotency_key, "sessions", request_hash)
    if claim is None:
        claim = await f.db.claim(
            key.id, idempotency_key, "sessions", request_hash, new_session=args | await f.gate.new_session(key)
        )
    return cast(SessionRow, await f.db.get_session(claim.session_id, key.id))


@router.get("/api/v1/sessions/{session_id}", responses=RESPONSES)
async def get_session(session_id: str, key: ApiKeyRow = Depends(caller), f: Frontend = Depends(frontend)) -> SessionRow:
    return await f.gate.session(session_id, key.id, fresh=True)


@router.delete("/api/v1/sessions/{session_id}", status_code=204, responses=RESPONSES)
async def close_session(session_id: str, key: ApiKeyRow = Depends(caller), f: Frontend = Depends(frontend)) -> Response:
    """Close a session: it no longer counts against the key's open sessions, and takes no more
    turns (resuming it is refused)."""
    if not await f.db.close_session(session_id, key.id):
        raise NotFoundError(f"no session {session_id[:64]!r}", code="session_not_found")
    await f.gate.session_closed(session_id, key.id)
    return Response(status_code=204)


@router.get("/api/v1/sessions/{session_id}/messages", responses=RESPONSES)
async def get_messages(
    session_id: str, key: ApiKeyRow = Depends(caller), f: Frontend = Depends(frontend)
) -> list[MessageRow]:
    """Every message of the session. Turns are acknowledged only once committed, so this shows
    every turn answered before it (read-your-writes)."""
    await f.gate.session(session_id, key.id)
    return cast(list[MessageRow], await f.db.messages(session_id))


def _audio(body: TurnBody) -> bytes | None:
    if body.audio_base64 is None:
        return None
    try:
        return base64.b64decode(body.audio_base64, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("audio_base64 is not valid base64", code="audio_unreadable") from None


@router.post("/api/v1/turn", responses={**RESPONSES, 503: {"model": ErrorOut}})
async def turn(
    body: TurnBody,
    request: Request,
    idempotency_key: str | None = IDEMPOTENCY,
    key: ApiKeyRow = Depends(caller),
    f: Frontend = Depends(frontend),
) -> TurnOut:
    """One turn: audio or text in; transcript, grounded answer, audio (base64 WAV), timings, cost
    out. Answered only once the turn is committed; with an `Idempotency-Key`, a retry returns the
    stored answer instead of running the turn again."""
    if (body.text is None) == (body.audio_base64 is None):
        raise InputError("send exactly one of text or audio_base64", code="invalid_input")
    audio = _audio(body)
    if body.language is not None:
        f.language(body.language)
    session, new_session = None, None
    if body.session_id:  # the caller's own open session, checked before anything is written for it
        session = await f.gate.session(body.session_id, key.id)
        if session.closed_at is not None:
            raise SessionClosed("the session is closed: open a new one")
        await f.gate.recheck(key, session.knowledge_base)
        fields = {
            "language": session.language,
            "mode": session.mode,
            "voice": session.voice,
            "output_script": session.output_script,
            "knowledge_base": session.knowledge_base,
        }
    else:
        fields = {
            "language": f.settings.default_language,
            "mode": f.settings.translation.default_mode,
            "voice": None,
            "output_script": None,
            "knowledge_base": f.settings.rag.check_knowledge_base(None, key.knowledge_bases),
        }
    fields |= body.model_dump(include={"language", "mode", "voice", "output_script"}, exclude_none=True)
    turn = TurnRequest(
        turn_id=uuid.uuid4().hex,  # the server's: a client's id never names (or overwrites) a turn
        request_id=request.state.request_id,
        idempotent=idempotency_key is not None,
        tenant=str(key.id),
        audio=audio,
        text=body.text,
        speak=body.speak,
        **fields,
    )
    request_hash = _idempotency_hash("turn", body.model_dump()) if idempotency_key is not None else ""
    claim = None
    if idempotency_key is not None and session is None:
        # A retry of a first turn is recognised before it is charged a new session.
        claim = await f.db.find_claim(key.id, idempotency_key, "turn", request_hash)
    if session is None and claim is None:
        # Nothing is created for a turn that cannot run: its input is checked (audio decoded)
        # first. A turn in an existing session is checked where it runs.
        if turn.audio is not None:  # a decode: off the event loop that runs this replica's live calls
            await asyncio.to_thread(prepare_turn, turn, f.settings)
        else:
            prepare_turn(turn, f.settings)
        new_session = {
            k: fields[k] for k in ("language", "mode", "voice", "output_script", "knowledge_base")
        } | await f.gate.new_session(key)
    if idempotency_key is not None:
        claim = claim or await f.db.claim(
            key.id,
            idempotency_key,
            "turn",
            request_hash,
            session_id=session.id if session else None,
            new_session=new_session,
            new_turn=True,
        )
        if claim.response is not None:
            return TurnOut.model_validate_json(claim.response)
        turn.turn_id = claim.turn_id
        if session is None:  # made by the claim, in its transaction
            session = await f.gate.session(claim.session_id, key.id)
    elif new_session is not None:
        session = await f.db.create_session(**new_session, api_key_id=key.id)
    if session is None:
        raise RuntimeError("no session for the turn")  # unreachable: claimed, found or created above
    t0 = time.perf_counter()
    try:
        out = await f.backend.answer(session.id, turn)
    except SamvadError:
        metrics.inc("samvad_turns_total", outcome="rejected", channel="rest")
        raise
    metrics.count_turn(out, "rest", (time.perf_counter() - t0) * 1000)
    return out
