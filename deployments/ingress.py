"""HTTP ingress: auth, validation, request ids, JSON errors, and the REST routes.

Turns go to the conversation's session actor (one per session, created when the session
opens); TTS and ASR calls go straight to their stage deployments.
"""


import base64
import binascii
import logging
import time
import uuid
from typing import Any

import httpx
import ray
import asyncio
import hashlib
import math
import hmac
import json
from pathlib import Path

from pydantic import BaseModel
from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors import telemetry
from actors.session import get_or_create
from deployments.api_models import AudioOut, ErrorOut, SessionBody, TtsBody, TurnBody, TurnOut
from samvad.audio import decode_audio, wav_bytes
from samvad import metrics
from samvad.errors import database_down, InputError, NotFoundError, RateLimitedError, SamvadError
from samvad.events import AudioEvent, ErrorEvent, TranscriptEvent, TurnDoneEvent
from samvad.providers.base import SpeechRequest
from samvad.settings import Settings
from samvad.stages import StageReport
from samvad.storage.cache import Cache, cache_key
from samvad.storage.ratelimit import RateLimiter, SessionSlots
from samvad.storage.repository import ApiKeyRow, MessageRow, SessionRow
from samvad.protocol import (
    CLOSE_BAD_START,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_TOO_MANY_SESSIONS,
    CLOSE_UNAUTHORIZED,
    SessionStart,
    SessionStarted,
)
from samvad.turn import TurnRequest
from samvad.voice import VoiceCall

STATIC = Path(__file__).resolve().parent / "static"

log = logging.getLogger("samvad.ingress")

ERRORS = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut}
api = FastAPI(title="Samvad", version="0.1.0", description="Voice assistant backend for Indian-language customer conversations")


class AuthError(SamvadError):
    code = "unauthorized"
    status = 401


def _error(request: Request, status: int, code: str, message: str) -> JSONResponse:
    rid = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    return JSONResponse({"error": {"code": code, "message": message, "request_id": rid}}, status_code=status)


@api.exception_handler(SamvadError)
async def _samvad_error(request: Request, exc: SamvadError) -> JSONResponse:
    # An error raised in another replica arrives wrapped by Ray; its `cause` is the original.
    cause = getattr(exc, "cause", None)
    exc = cause if isinstance(cause, SamvadError) else exc
    response = _error(request, exc.status, exc.code, exc.message)
    if isinstance(exc, RateLimitedError):
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return _error(request, 422, "validation_error", f"{where}: {first.get('msg', 'invalid request')}".strip(": "))


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}
    return _error(request, exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error request_id=%s", getattr(request.state, "request_id", None))
    return _error(request, 500, "internal_error", "an internal error occurred; quote the request id when reporting it")


@api.middleware("http")
async def _request_context(request: Request, call_next):
    rid = request.headers.get("x-request-id") or uuid.uuid4().hex
    if len(rid) > 128 or not rid.isprintable():
        rid = uuid.uuid4().hex
    request.state.request_id = rid
    origin = request.headers.get("origin")
    allowed = origin is not None and _origin_allowed(origin, request.headers.get("host", ""), request.app)
    if request.method == "OPTIONS" and origin is not None:  # CORS preflight
        if not allowed:
            return _error(request, 403, "origin_not_allowed", f"origin {origin} may not call this API")
        return Response(status_code=204, headers=_cors_headers(origin))
    limit = request.app.state.max_body_bytes if hasattr(request.app.state, "max_body_bytes") else 8 << 20
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        return _error(request, 413, "payload_too_large", f"the request body is larger than {limit} bytes")
    t0 = time.perf_counter()
    try:
        response = await call_next(request)
    except Exception:  # noqa: BLE001 - the handler above renders it; never a traceback to the client
        log.exception("unhandled error request_id=%s", rid)
        response = _error(request, 500, "internal_error", "an internal error occurred")
    route = request.scope.get("route")
    metrics.observe("samvad_http_ms", (time.perf_counter() - t0) * 1000, route=getattr(route, "path", "unmatched"),
                    status=str(response.status_code))
    if allowed:
        response.headers.update(_cors_headers(origin))
    # Which ingress replica answered (an opaque id): for ops tracing a request across replicas.
    response.headers["X-Samvad-Replica"] = getattr(request.app.state, "replica", "")
    # No X-Request-ID here: Serve's proxy passes the client's id (or one it made) to us and sets
    # the same id on every response; adding ours would send the header twice.
    return response


def _origin_allowed(origin: str, host: str, app) -> bool:
    """Same origin (the demo page is served here) or one of `service.cors_origins`."""
    from urllib.parse import urlsplit

    return urlsplit(origin).netloc == host or origin in getattr(app.state, "cors_origins", [])


def _cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin, "Vary": "Origin",
        "Access-Control-Allow-Methods": "GET, POST", "Access-Control-Allow-Headers": "X-API-Key, Content-Type, X-Request-ID",
        "Access-Control-Max-Age": "600",
    }


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    def __init__(self, settings: dict[str, Any], asr, llm, retriever, translation, tts, store) -> None:
        telemetry.install()
        self.settings = Settings.model_validate(settings)
        self._settings_dict = settings
        self.asr, self.tts, self.store = asr, tts, store
        self._actors: dict[str, Any] = {}
        # Session rows seen recently: a turn on a known session skips a Store round trip.
        self._sessions: dict[str, tuple[float, SessionRow]] = {}
        self._keys: dict[str, tuple[float, ApiKeyRow]] = {}  # key -> (expires, row): avoids a DB hit per request
        rurl, fail_open = self.settings.redis_url, self.settings.limits.fail_open
        self.limiter = RateLimiter(rurl, fail_open=fail_open) if rurl else None
        self.slots = SessionSlots(rurl, fail_open=fail_open) if rurl else None
        self.rows = Cache(rurl, {"row": 600}) if rurl else None
        api.state.max_body_bytes = self.settings.service.max_body_bytes
        api.state.cors_origins = self.settings.service.cors_origins
        api.state.replica = serve.get_replica_context().replica_id.unique_id
        self._live: dict[int, int] = {}  # API key id -> open voice sessions on this replica
        self._metrics_export: str | None = None  # this node's Ray metrics agent

    # plumbing ---------------------------------------------------------------------------------
    async def _auth(self, request: Request) -> int:
        """The caller's key id, after the key's and the client IP's rate limits."""
        key = request.headers.get("x-api-key") or request.query_params.get("api_key")
        if not key:
            raise AuthError("missing API key: send it in the X-API-Key header")
        row = await self._key_row(key)
        if row is None:
            raise AuthError("invalid or revoked API key")
        limits = self.settings.limits
        ip = request.client.host if request.client else "unknown"
        await self._take("key", f"key:{row.id}", row.requests_per_minute or limits.requests_per_minute)
        await self._take("ip", f"ip:{ip}", limits.ip_requests_per_minute)
        return row.id

    async def _take(self, scope: str, bucket: str, per_minute: int) -> None:
        if self.limiter is None:
            return
        decision = await self.limiter.take(bucket, per_minute)
        if decision.degraded:
            metrics.inc("samvad_rate_limit_degraded_total", policy="open" if decision.allowed else "closed")
        if not decision.allowed:
            metrics.inc("samvad_rate_limited_total", scope=scope)
            raise RateLimitedError(f"rate limit of {per_minute} requests per minute per {scope} reached; retry later",
                                   decision.retry_after_s)

    async def _key_row(self, key: str | None) -> ApiKeyRow | None:
        if not key:
            return None
        cached = self._keys.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        row = await self._last_known("apikey", key, ApiKeyRow, lambda: self.store.call.remote("verify_key", key))
        if row is not None:
            self._keys[key] = (time.monotonic() + 30.0, row)
        return row

    async def _last_known(self, kind: str, ident: str, model: type[BaseModel], read):
        """A row read through the Store, remembered in Redis (under a hash of its id): while the
        database is down, e.g. restarting, the last known row keeps auth and session lookups
        working instead of failing every request. A key found revoked is forgotten at once."""
        ck = cache_key(f"row:{kind}", ident)
        try:
            row = await read()
        except Exception as exc:
            if self.rows is None or not database_down(exc):
                raise
            raw = await self.rows.get(ck)
            if raw is None:
                raise
            return model.model_validate_json(raw)
        if self.rows is not None:
            if row is None:
                await self.rows.delete(ck)
            else:
                await self.rows.set("row", ck, row.model_dump_json().encode())
        return row

    def _language(self, language: str) -> str:
        if language not in self.settings.languages:
            raise InputError(f"unknown language {language!r}; use one of: {', '.join(sorted(self.settings.languages))}",
                             code="unknown_language")
        return language

    def _actor(self, session_id: str):
        if session_id not in self._actors:
            self._actors[session_id] = get_or_create(session_id, self._settings_dict)
        return self._actors[session_id]

    async def _session(self, session_id: str, *, fresh: bool = False) -> SessionRow:
        cached = self._sessions.get(session_id)
        if cached and not fresh and cached[0] > time.monotonic():
            return cached[1]
        row = await self._last_known("session", session_id, SessionRow,
                                     lambda: self.store.call.remote("get_session", session_id))
        if len(self._sessions) > 10_000:  # bounded: drop the oldest entries
            for sid in list(self._sessions)[:1000]:
                del self._sessions[sid]
        self._sessions[session_id] = (time.monotonic() + 60.0, row)
        return row

    def resume_token(self, session_id: str) -> str:
        secret = self.settings.service.key_secret.encode()
        return hmac.new(secret, f"resume:{session_id}".encode(), hashlib.sha256).hexdigest()[:32]

    async def _on_actor(self, session_id: str, method: str, *args: Any) -> Any:
        """Call a session-actor method; an actor that is gone (idle exit, crash) is re-created
        once and rehydrates from PostgreSQL."""
        for attempt in (1, 2):
            try:
                return await getattr(self._actor(session_id), method).remote(*args)
            except ray.exceptions.RayActorError:
                self._actors.pop(session_id, None)
                if attempt == 2:
                    raise

    async def _start_turn(self, session_id: str, request: TurnRequest):
        for attempt in (1, 2):
            gen = self._actor(session_id).run_turn.options(num_returns="streaming").remote(request)
            finished, produced = False, False
            try:
                async for ref in gen:
                    event = await ref
                    produced = True
                    yield event
                finished = True
                return
            except ray.exceptions.RayActorError:
                self._actors.pop(session_id, None)
                if produced or attempt == 2:
                    raise
            finally:
                if not finished:  # barge-in or hang-up: stop the turn in the actor and downstream
                    try:
                        ray.cancel(gen)
                    except Exception:  # noqa: BLE001 - the actor may already be gone
                        pass

    # routes -----------------------------------------------------------------------------------
    @api.get("/", include_in_schema=False)
    async def demo_page(self) -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @api.get("/static/{name}", include_in_schema=False)
    async def static_file(self, name: str) -> FileResponse:
        path = (STATIC / name).resolve()
        if path.parent != STATIC or not path.is_file():
            raise NotFoundError(f"no file {name!r}")
        return FileResponse(path)

    @api.websocket("/api/v1/voice-session")
    async def voice_session(self, ws: WebSocket) -> None:
        """Streaming voice session: see docs/voice-session.md."""
        await ws.accept()
        origin = ws.headers.get("origin")
        if origin is not None and not _origin_allowed(origin, ws.headers.get("host", ""), api):
            # Browsers do not apply CORS to WebSockets: another site's page could open one with
            # the user's query token, so foreign origins are refused here.
            await ws.close(CLOSE_FORBIDDEN, "origin not allowed")
            return
        try:
            raw = await asyncio.wait_for(ws.receive_text(), timeout=10)
            start = SessionStart.model_validate(json.loads(raw))
        except Exception:  # noqa: BLE001 - any malformed opening ends the connection with a reason
            await ws.send_text(ErrorEvent(turn_id="", code="bad_start", status=400,
                                          message="the first message must be a valid session.start").model_dump_json())
            await ws.close(CLOSE_BAD_START, "expected session.start")
            return
        key_row = await self._key_row(ws.headers.get("x-api-key") or ws.query_params.get("api_key") or start.api_key)
        if key_row is None:
            await ws.close(CLOSE_UNAUTHORIZED, "missing or invalid API key")
            return
        key_id = key_row.id
        slot, limit = uuid.uuid4().hex, key_row.max_voice_sessions or self.settings.voice.max_sessions_per_key
        if not await self._admit(key_id, slot, limit):
            await ws.close(CLOSE_TOO_MANY_SESSIONS, "too many live sessions for this API key")
            return
        self._live[key_id] = self._live.get(key_id, 0) + 1
        metrics.gauge("samvad_live_voice_sessions", sum(self._live.values()))
        renew = asyncio.create_task(self._renew_slot(key_id, slot, limit))
        try:
            await self._voice_call(ws, start, key_id)
        finally:
            renew.cancel()
            self._live[key_id] -= 1
            metrics.gauge("samvad_live_voice_sessions", sum(self._live.values()))
            if self.slots is not None:
                await self.slots.release(key_id, slot)

    async def _admit(self, key_id: int, slot: str, limit: int) -> bool:
        """A slot among the key's concurrent voice sessions, counted across replicas in Redis."""
        if self.slots is None:
            return self._live.get(key_id, 0) < limit
        decision = await self.slots.admit(key_id, slot, limit)
        if decision.degraded:
            metrics.inc("samvad_rate_limit_degraded_total", policy="open" if decision.allowed else "closed")
        return decision.allowed

    async def _renew_slot(self, key_id: int, slot: str, limit: int) -> None:
        while self.slots is not None:
            await asyncio.sleep(self.slots.lease_s / 3)
            await self.slots.admit(key_id, slot, limit)

    async def _voice_call(self, ws: WebSocket, start: SessionStart, key_id: int) -> None:
        language = start.language or self.settings.default_language
        if language not in self.settings.languages:
            await ws.close(CLOSE_BAD_START, f"unknown language {language}"[:120])
            return
        sid = ws.query_params.get("session_id")
        interrupted = None
        if sid:
            if not hmac.compare_digest(ws.query_params.get("resume_token", ""), self.resume_token(sid)):
                await ws.close(CLOSE_FORBIDDEN, "a valid resume_token is needed to resume a session")
                return
            try:
                row = await self._session(sid, fresh=True)
            except Exception:  # noqa: BLE001
                await ws.close(CLOSE_NOT_FOUND, "unknown session")
                return
            messages = await self.store.call.remote("messages", sid, 2)
            last = messages[-1] if messages else None
            interrupted = last.turn_id if last and last.role == "assistant" and last.status == "interrupted" else None
        else:
            row = await self.store.call.remote("create_session", language, start.mode or "formal", start.voice, key_id,
                                               start.output_script)
            sid = row.id
        session = {"language": start.language or row.language, "mode": start.mode or row.mode,
                   "voice": start.voice or row.voice, "output_script": start.output_script or row.output_script}
        await self._on_actor(sid, "info")  # make sure it is up before the caller speaks
        await ws.send_text(SessionStarted(
            session_id=sid, resume_token=self.resume_token(sid), resumed=bool(ws.query_params.get("session_id")),
            language=session["language"], mode=session["mode"], interrupted_turn=interrupted,
        ).model_dump_json())

        async def transcribe(audio, language):  # early ASR and backchannels, straight to the ASR stage
            return await self.asr.transcribe.remote(audio, language)

        call = VoiceCall(
            ws, self.settings, session, start,
            start_turn=lambda req: self._start_turn(sid, req),
            interrupt=lambda turn_id, heard: self._on_actor(sid, "interrupt", turn_id, heard),
            transcribe=transcribe,
        )
        await call.run()

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", responses={503: {"model": ErrorOut}})
    async def readyz(self, request: Request) -> dict[str, str]:
        try:
            await self.store.call.remote("ping")
        except Exception:  # noqa: BLE001
            raise SamvadError("the database is not reachable", code="not_ready") from None
        return {"status": "ready"}

    @api.get("/metrics", response_class=PlainTextResponse)
    async def metrics(self) -> Response:
        """Samvad's and Ray Serve's metrics for this node, from every process on it (relayed from
        Ray's metrics agent; Prometheus on a cluster scrapes each node's agent directly)."""
        url = self._metrics_url()
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                r = await client.get(url)
                r.raise_for_status()
        except httpx.HTTPError:
            raise SamvadError("the node's metrics agent did not answer", code="metrics_unavailable") from None
        return PlainTextResponse(metrics.select_families(r.text), media_type="text/plain; version=0.0.4")

    def _metrics_url(self) -> str:
        if self._metrics_export is None:
            node_id = ray.get_runtime_context().get_node_id()
            node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
            self._metrics_export = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        return self._metrics_export

    @api.post("/api/v1/tts", responses={200: {"content": {"audio/wav": {}}}, **{k: {"model": v} for k, v in ERRORS.items()}})
    async def tts_route(self, body: TtsBody, request: Request) -> Response:
        """Text to speech: returns a WAV file. `X-Cache: hit` when served from the Redis cache."""
        await self._auth(request)
        self._language(body.language)
        pcm, rate, hit = [], 0, False
        async for item in self.tts.options(stream=True).stream.remote(
            SpeechRequest(text=body.text, language=body.language, voice=body.voice)
        ):
            if isinstance(item, StageReport):
                hit = item.cache_hit
            else:
                pcm.append(item.pcm16)
                rate = item.sample_rate
        metrics.inc("samvad_cache_total", stage="tts_api", result="hit" if hit else "miss")
        return Response(wav_bytes(b"".join(pcm), rate), media_type="audio/wav", headers={"X-Cache": "hit" if hit else "miss"})

    @api.post("/api/v1/asr", responses={k: {"model": v} for k, v in ERRORS.items()})
    async def asr_route(
        self, request: Request, file: UploadFile = File(..., description="WAV/FLAC/OGG audio"),
        language: str = Form("en-IN"),
    ) -> dict:
        """Speech to text: returns the transcript payload."""
        await self._auth(request)
        self._language(language)
        a = self.settings.audio
        audio = decode_audio(await file.read(), target_rate=a.sample_rate, max_seconds=a.max_seconds, min_seconds=a.min_seconds)
        transcript, _ = await self.asr.transcribe.remote(audio, language)
        return transcript.model_dump()

    @api.post("/api/v1/sessions", status_code=201, responses={k: {"model": v} for k, v in ERRORS.items()})
    async def create_session(self, body: SessionBody, request: Request) -> SessionRow:
        """Open a session; its actor starts now, not on the first utterance."""
        key_id = await self._auth(request)
        row = await self.store.call.remote(
            "create_session", self._language(body.language), body.mode, body.voice, key_id, body.output_script
        )
        await self._on_actor(row.id, "info")  # start it now (~1 s), off the caller's first turn
        return row

    @api.get("/api/v1/sessions/{session_id}", responses={k: {"model": v} for k, v in ERRORS.items()})
    async def get_session(self, session_id: str, request: Request) -> SessionRow:
        await self._auth(request)
        return await self._session(session_id, fresh=True)

    @api.get("/api/v1/sessions/{session_id}/messages", responses={k: {"model": v} for k, v in ERRORS.items()})
    async def get_messages(self, session_id: str, request: Request) -> list[MessageRow]:
        await self._auth(request)
        await self._session(session_id)
        return await self.store.call.remote("messages", session_id)

    @api.post("/api/v1/turn", responses={k: {"model": v} for k, v in ERRORS.items()})
    async def turn(self, body: TurnBody, request: Request) -> TurnOut:
        """One turn: audio or text in; transcript, grounded answer, audio (base64 WAV), timings, cost out."""
        key_id = await self._auth(request)
        if (body.text is None) == (body.audio_base64 is None):
            raise InputError("send exactly one of text or audio_base64", code="invalid_input")
        audio = None
        if body.audio_base64 is not None:
            try:
                audio = base64.b64decode(body.audio_base64, validate=True)
            except (binascii.Error, ValueError):
                raise InputError("audio_base64 is not valid base64", code="audio_unreadable") from None
        if body.session_id:
            session = await self._session(body.session_id)
        else:
            session = await self.store.call.remote(
                "create_session", self._language(body.language or self.settings.default_language),
                body.mode or "formal", body.voice, key_id, body.output_script,
            )
        turn = TurnRequest(
            turn_id=request.state.request_id[:64], audio=audio, text=body.text,
            language=self._language(body.language or session.language), mode=body.mode or session.mode,
            voice=body.voice or session.voice, output_script=body.output_script or session.output_script,
            speak=body.speak,
        )
        t0 = time.perf_counter()
        events = await self._run_turn(session.id, turn)
        return self._turn_out(session.id, turn, events, (time.perf_counter() - t0) * 1000)

    async def _run_turn(self, session_id: str, turn: TurnRequest) -> list:
        # Nothing has reached the client yet: if the session actor dies mid-turn, the whole turn
        # runs again in its replacement (same turn id: its writes are upserts, not duplicates).
        for attempt in (1, 2):
            try:
                return [event async for event in self._start_turn(session_id, turn)]
            except ray.exceptions.RayActorError:
                if attempt == 2:
                    raise SamvadError("the session could not be resumed; retry the request",
                                      code="session_unavailable") from None
        raise AssertionError("unreachable")

    def _turn_out(self, session_id: str, turn: TurnRequest, events: list, elapsed_ms: float) -> TurnOut:
        done = next((e for e in events if isinstance(e, TurnDoneEvent)), None)
        error = next((e for e in events if isinstance(e, ErrorEvent)), None)
        if done is None:
            metrics.inc("samvad_turns_total", outcome="rejected", channel="rest")
            if error is not None:
                exc_type = InputError if 400 <= error.status < 500 else SamvadError
                exc = exc_type(error.message, code=error.code)
                exc.status = error.status
                raise exc
            raise SamvadError("the turn ended without a result", code="turn_incomplete")
        metrics.count_turn(done, "rest", elapsed_ms)
        chunks = [e for e in events if isinstance(e, AudioEvent)]
        audio = None
        if chunks:
            pcm = b"".join(c.audio for c in chunks)
            rate = chunks[0].sample_rate
            audio = AudioOut(sample_rate=rate, seconds=round(len(pcm) / 2 / rate, 3),
                             base64=base64.b64encode(wav_bytes(pcm, rate)).decode("ascii"))
        transcript = next((e.transcript for e in events if isinstance(e, TranscriptEvent)), None)
        return TurnOut(
            session_id=session_id, turn_id=turn.turn_id, outcome=done.outcome, transcript=transcript,
            response=done.response, audio=audio, stages=done.stages, first_audio_ms=done.first_audio_ms,
            cost=done.cost, flags=done.flags + ([f"error:{error.code}"] if error else []), calls=done.calls,
        )
