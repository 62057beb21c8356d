"""HTTP ingress: auth, validation, request ids, JSON errors, and the REST and WebSocket routes.

A turn goes to the Sessions replica that hosts its conversation (routed by session id); TTS and
ASR calls go straight to their stage deployments; reads and session creation go to PostgreSQL
through this replica's own small pool. Who may call and how much is `samvad.api.gate`.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import ray
from fastapi import FastAPI, File, Form, Header, HTTPException, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors import remote, telemetry
from deployments.api_models import ErrorOut, SessionBody, TtsBody, TurnBody, TurnOut
from samvad import metrics
from samvad.api import tokens
from samvad.api.gate import Gate, LimiterUnavailable
from samvad.audio import decode_audio, wav_bytes
from samvad.errors import (
    DatabaseUnavailable, InputError, NotFoundError, ProviderError, RateLimitedError, SamvadError, public_message,
)
from samvad.providers.base import SpeechRequest
from samvad.settings import Settings, secret
from samvad.stages import StageReport
from samvad.storage.database import Database
from samvad.events import ErrorEvent
from samvad.storage.repository import ApiKeyRow, MessageRow, SessionRow
from samvad.protocol import (
    CLOSE_BAD_START,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_MANY_SESSIONS,
    CLOSE_UNAUTHORIZED,
    SessionClosing,
    SessionStart,
    SessionStarted,
)
from samvad.turn import TurnRequest
from samvad.voice import VoiceCall

STATIC = Path(__file__).resolve().parent / "static"

log = logging.getLogger("samvad.ingress")

ERRORS = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut,
          429: ErrorOut}
RESPONSES = {k: {"model": v} for k, v in ERRORS.items()}
IDEMPOTENCY = Header(None, alias="Idempotency-Key", max_length=255,
                     description="the same key returns the same result: retry safely after a dropped connection")
api = FastAPI(title="Samvad", version="0.1.0", description="Voice assistant backend for Indian-language customer conversations")


def _error(request: Request, status: int, code: str, message: str) -> JSONResponse:
    rid = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    return JSONResponse({"error": {"code": code, "message": message, "request_id": rid}}, status_code=status)


@api.exception_handler(SamvadError)
async def _samvad_error(request: Request, exc: SamvadError) -> JSONResponse:
    # An error raised in another replica arrives wrapped by Ray; its `cause` is the original.
    cause = getattr(exc, "cause", None)
    exc = cause if isinstance(cause, SamvadError) else exc
    if isinstance(exc, ProviderError):  # its own text stays in the log (errors.public_message)
        log.warning("provider error request_id=%s: %s", getattr(request.state, "request_id", None), exc.message)
    response = _error(request, exc.status, exc.code, public_message(exc))
    if isinstance(exc, (RateLimitedError, LimiterUnavailable)):
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


OPS_PATHS = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class BodyTooLarge(HTTPException):  # FastAPI's own: its body parser re-raises it as it is
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class RequestContext:
    """Request id, CORS, the body-size budget, the admin key on operations routes, latency metric
    and replica header for every HTTP request. Plain ASGI rather than `@app.middleware("http")`
    (Starlette's BaseHTTPMiddleware runs each request through an extra task and stream): this is
    on every turn's path."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        if len(rid) > 128 or not rid.isprintable():
            rid = uuid.uuid4().hex
        request.state.request_id = rid
        origin = request.headers.get("origin")
        state = scope["app"].state
        allowed = origin is not None and _origin_allowed(origin, request.headers.get("host", ""), scope["app"])
        if request.method == "OPTIONS" and origin is not None:  # CORS preflight
            response = (_error(request, 403, "origin_not_allowed", f"origin {origin} may not call this API") if not allowed
                        else Response(status_code=204, headers=_cors_headers(origin)))
            await response(scope, receive, send)
            return
        limit = getattr(state, "max_body_bytes", 8 << 20)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _error(request, 413, "payload_too_large", f"the request body is larger than {limit} bytes")(scope, receive, send)
            return
        admin = getattr(state, "admin_key", None)
        if admin and scope["path"] in OPS_PATHS and not hmac.compare_digest(
                request.headers.get("x-admin-key", "").encode(), admin.encode()):
            await _error(request, 401, "admin_key_required", "this operations route needs the X-Admin-Key header")(scope, receive, send)
            return
        received = 0
        inner_receive = receive

        async def receive():  # the budget holds for the bytes that arrive, chunked uploads included
            nonlocal received
            message = await inner_receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message
        extra = [(b"x-samvad-replica", getattr(state, "replica", "").encode())]  # which replica answered (ops)
        if allowed:
            extra += [(k.lower().encode(), v.encode()) for k, v in _cors_headers(origin).items()]
        t0, status = time.perf_counter(), 500

        async def send_with_headers(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            metrics.observe("samvad_http_ms", (time.perf_counter() - t0) * 1000,
                            route=getattr(route, "path", "unmatched"), status=str(status))
        # No X-Request-ID here: Serve's proxy passes the client's id (or one it made) to us and sets
        # the same id on every response; adding ours would send the header twice.


api.add_middleware(RequestContext)


def _origin_allowed(origin: str, host: str, app) -> bool:
    """Same origin (the demo page is served here) or one of `service.cors_origins`."""
    from urllib.parse import urlsplit

    return urlsplit(origin).netloc == host or origin in getattr(app.state, "cors_origins", [])


def _cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin, "Vary": "Origin",
        "Access-Control-Allow-Methods": "GET, POST", "Access-Control-Allow-Headers": "X-API-Key, Content-Type, X-Request-ID, Idempotency-Key",
        "Access-Control-Max-Age": "600",
    }


async def _refuse(ws: WebSocket, exc: SamvadError) -> None:
    """Close a call that a limit refused (4429) or that could not be checked now (1013, try again
    later: Redis or the database is down), with the error's message as the reason."""
    await ws.close(CLOSE_TOO_MANY_SESSIONS if exc.status == 429 else 1013, exc.message[:120])


class SessionClosed(SamvadError):
    code = "session_closed"
    status = 409


def _idempotency_hash(route: str, body: dict) -> str:
    return hashlib.sha256(json.dumps([route, body], sort_keys=True, default=str).encode()).hexdigest()


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    def __init__(self, settings: dict[str, Any], asr, tts, sessions) -> None:
        telemetry.install()
        self.settings = Settings.model_validate(settings)
        # Every Sessions call's first argument, the session id, picks the replica hosting that
        # conversation (actors.router.SessionRouter).
        self.asr, self.tts, self.sessions = asr, tts, sessions
        self._sessions_stream = sessions.options(stream=True)
        self.db = Database(self.settings)
        self._resume_secret = secret(self.settings.service, "resume")
        self.gate = Gate(self.settings, self.db)
        self.gate.on_revoked(self._revoked)
        self._watch: asyncio.Task | None = None
        self._live: dict[int, set[VoiceCall]] = {}  # API key id -> its calls on this replica
        self._ready: tuple[float, bool] = (0.0, False)  # /readyz: (checked at, ok), one ping per second
        self._ready_lock = asyncio.Lock()
        api.state.max_body_bytes = self.settings.service.max_body_bytes
        api.state.cors_origins = self.settings.service.cors_origins
        admin = self.settings.service.admin_key
        api.state.admin_key = admin.get_secret_value() if admin else None
        api.state.replica = serve.get_replica_context().replica_id.unique_id
        self._metrics_export: str | None = None  # this node's Ray metrics agent
        self._closing = asyncio.Event()  # set by `drain`: live calls end, new ones are refused
        self._calls = 0

    # plumbing ---------------------------------------------------------------------------------
    def _ip(self, conn: Request | WebSocket) -> str:
        return self.gate.ip(conn.client.host if conn.client else None, conn.headers.get("x-forwarded-for"))

    async def _auth(self, request: Request) -> ApiKeyRow:
        """The caller's key, from the X-API-Key header only (a key in a URL ends up in logs)."""
        self._watch_revocations()
        return await self.gate.admit(request.headers.get("x-api-key"), self._ip(request))

    def _watch_revocations(self) -> None:
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(self.gate.watch_revocations())

    def _revoked(self, key_id: int) -> None:
        for call in list(self._live.get(key_id, ())):
            call.end(CLOSE_UNAUTHORIZED, "API key revoked")

    def _language(self, language: str) -> str:
        if language not in self.settings.languages:
            raise InputError(f"unknown language {language!r}; use one of: {', '.join(sorted(self.settings.languages))}",
                             code="unknown_language")
        return language

    async def drain(self, on: bool = True) -> int:
        """Shutdown (`samvad run` on SIGINT/SIGTERM, broadcast to every replica): live calls end
        after the answer playing, told how to resume (`session.closing`, close 1012); new calls
        are refused with 1012. `drain(False)` takes new calls again. Returns the live calls."""
        if on:
            self._closing.set()
        elif self._closing.is_set():
            self._closing = asyncio.Event()
        return self._calls

    def resume_token(self, session_id: str, key_id: int) -> str:
        return tokens.make(self._resume_secret, session_id, key_id, self.settings.service.resume_token_ttl_s)

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
        """Streaming voice session: see docs/voice-session.md. Admission, cheapest check first:
        origin, the client IP's request bucket and failed-key budget, its open-socket cap, then
        `session.start` within `service.ws_auth_timeout_s` with the key (header or message),
        the key's rate limit, its live-call cap."""
        self._watch_revocations()
        await ws.accept()  # refusals below are close codes a client can act on, not a bare HTTP 403
        origin = ws.headers.get("origin")
        if origin is not None and not _origin_allowed(origin, ws.headers.get("host", ""), api):
            # Browsers do not apply CORS to WebSockets: another site's page could open one with
            # the user's key, so foreign origins are refused here.
            await ws.close(CLOSE_FORBIDDEN, "origin not allowed")
            return
        ip = self._ip(ws)
        try:
            await self.gate.admit_ip(ip)
        except SamvadError as exc:
            await _refuse(ws, exc)
            return
        socket = uuid.uuid4().hex
        if not await self.gate.open_socket(ip, socket):
            await ws.close(CLOSE_TOO_MANY_SESSIONS, "too many open sockets from this address")
            return
        keep = asyncio.create_task(self.gate.keep_socket(ip, socket))
        try:
            await self._admit_call(ws, ip)
        finally:
            keep.cancel()
            await self.gate.close_socket(ip, socket)

    async def _admit_call(self, ws: WebSocket, ip: str) -> None:
        try:
            raw = await asyncio.wait_for(ws.receive_text(), timeout=self.settings.service.ws_auth_timeout_s)
            if len(raw.encode()) > self.settings.voice.max_text_bytes:
                raise ValueError("session.start too big")
            start = SessionStart.model_validate(json.loads(raw))
        except Exception:  # noqa: BLE001 - a late, malformed or missing opening ends the connection
            await ws.send_text(ErrorEvent(turn_id="", code="bad_start", status=400,
                                          message="the first message must be a valid session.start, sent at once").model_dump_json())
            await ws.close(CLOSE_BAD_START, "expected session.start")
            return
        if self._closing.is_set():
            await ws.close(CLOSE_SERVICE_RESTART, "server restarting: connect again shortly")
            return
        key = await self.gate.key(ws.headers.get("x-api-key") or start.api_key)
        if key is None:
            await self.gate.failed(ip)
            await ws.close(CLOSE_UNAUTHORIZED, "missing or invalid API key")
            return
        try:
            await self.gate.charge(key)  # connecting counts as a request
        except SamvadError as exc:
            await _refuse(ws, exc)
            return
        slot = uuid.uuid4().hex
        if not await self.gate.open_call(key, slot):
            await ws.close(CLOSE_TOO_MANY_SESSIONS, "too many live sessions for this API key")
            return
        renew = asyncio.create_task(self.gate.keep_call(key, slot))
        self._calls += 1
        try:
            await self._voice_call(ws, start, key)
        finally:
            self._calls -= 1
            renew.cancel()
            await self.gate.close_call(key, slot)

    async def _voice_call(self, ws: WebSocket, start: SessionStart, key: ApiKeyRow) -> None:
        language = start.language or self.settings.default_language
        if language not in self.settings.languages:
            await ws.close(CLOSE_BAD_START, f"unknown language {language}"[:120])
            return
        sid = ws.query_params.get("session_id")
        interrupted = None
        if sid:
            # Checked before the database is asked: a wrong, expired or another key's token costs
            # nothing, and answers exactly like a session that does not exist.
            verdict = tokens.check(self._resume_secret, ws.query_params.get("resume_token"), sid, key.id)
            if verdict != "ok":
                await ws.close(*((CLOSE_FORBIDDEN, "resume token expired: start a new session") if verdict == "expired"
                                 else (CLOSE_NOT_FOUND, "unknown session")))
                return
            try:
                row = await self.db.get_session(sid, key.id)  # another key's session is "unknown"
            except SamvadError:
                await ws.close(CLOSE_NOT_FOUND, "unknown session")
                return
            if row.closed_at is not None:
                await ws.close(CLOSE_NOT_FOUND, "the session is closed")
                return
            messages = await self.db.messages(sid, 2)
            last = messages[-1] if messages else None
            interrupted = last.turn_id if last and last.role == "assistant" and last.status == "interrupted" else None
        else:
            try:
                caps = await self.gate.new_session(key)
                row = await self.db.create_session(language, start.mode or "formal", start.voice, key.id, start.output_script,
                                                   **caps)
            except SamvadError as exc:
                await _refuse(ws, exc)
                return
            sid = row.id
        session = {"language": start.language or row.language, "mode": start.mode or row.mode,
                   "voice": start.voice or row.voice, "output_script": start.output_script or row.output_script,
                   "tenant": str(key.id)}
        await ws.send_text(SessionStarted(
            session_id=sid, resume_token=self.resume_token(sid, key.id), resumed=bool(ws.query_params.get("session_id")),
            language=session["language"], mode=session["mode"], interrupted_turn=interrupted,
        ).model_dump_json())

        async def start_turn(request):
            async for batch in remote.stream(lambda: self._sessions_stream.stream.remote(sid, request)):
                for event in batch:
                    yield event

        async def settle(turn_id: str, heard: str, complete: bool) -> None:
            await remote.call(lambda: self.sessions.settle.remote(sid, turn_id, heard, complete))

        async def transcribe(audio, language):  # early ASR and backchannels, straight to the ASR stage
            return await remote.call(lambda: self.asr.transcribe.remote(audio, language))

        async def charge() -> None:
            await self.gate.charge(key)

        goodbye = SessionClosing(session_id=sid, resume_token=self.resume_token(sid, key.id))
        call = VoiceCall(ws, self.settings, session, start, start_turn=start_turn, settle=settle, transcribe=transcribe,
                         closing=self._closing, goodbye=goodbye, charge=charge)
        live = self._live.setdefault(key.id, set())
        live.add(call)
        try:
            await call.run()
        finally:
            live.discard(call)
            if not live:
                self._live.pop(key.id, None)

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", responses={503: {"model": ErrorOut}})
    async def readyz(self) -> dict[str, str]:
        """Ready when the database answers one ping: within 2 s, or 0.5 s while it is known to
        be down (a stopped server refuses at once; a hung one must not hold the probe). Asked
        without a key, so the answer is reused for a second: a flood of probes is one ping."""
        async with self._ready_lock:
            checked, ok = self._ready
            if time.monotonic() - checked >= 1.0:
                try:
                    await asyncio.wait_for(self.db.ping_once(), timeout=2.0 if self.db.up else 0.5)
                    ok = True
                except Exception:  # noqa: BLE001
                    ok = False
                self.db.up = ok
                self._ready = (time.monotonic(), ok)
        if not ok:
            raise DatabaseUnavailable("the database is not reachable", code="not_ready")
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

    @api.post("/api/v1/tts", responses={200: {"content": {"audio/wav": {}}}, **RESPONSES})
    async def tts_route(self, body: TtsBody, request: Request) -> Response:
        """Text to speech: returns a WAV file. `X-Cache: hit` when served from the Redis cache."""
        key = await self._auth(request)
        self._language(body.language)
        pcm, rate, hit = [], 0, False
        speech = SpeechRequest(text=body.text, language=body.language, voice=body.voice, tenant=str(key.id))
        async for item in remote.stream(lambda: self.tts.options(stream=True).stream.remote(speech)):
            if isinstance(item, StageReport):
                hit = item.cache_hit
            else:
                pcm.append(item.pcm16)
                rate = item.sample_rate
        metrics.inc("samvad_cache_total", stage="tts_api", result="hit" if hit else "miss")
        return Response(wav_bytes(b"".join(pcm), rate), media_type="audio/wav", headers={"X-Cache": "hit" if hit else "miss"})

    @api.post("/api/v1/asr", responses=RESPONSES)
    async def asr_route(
        self, request: Request, file: UploadFile = File(..., description="WAV/FLAC/OGG audio"),
        language: str = Form("en-IN"),
    ) -> dict:
        """Speech to text: returns the transcript payload."""
        await self._auth(request)
        self._language(language)
        a = self.settings.audio
        audio = decode_audio(await file.read(), target_rate=a.sample_rate, max_seconds=a.max_seconds, min_seconds=a.min_seconds)
        transcript, _ = await remote.call(lambda: self.asr.transcribe.remote(audio, language))
        return transcript.model_dump()

    @api.post("/api/v1/sessions", status_code=201, responses=RESPONSES)
    async def create_session(self, body: SessionBody, request: Request, idempotency_key: str | None = IDEMPOTENCY) -> SessionRow:
        """Open a session (one database insert: its conversation is activated on first use)."""
        key = await self._auth(request)
        args = {"language": self._language(body.language), "mode": body.mode, "voice": body.voice,
                "output_script": body.output_script}
        caps = await self.gate.new_session(key)
        if idempotency_key is None:
            return await self.db.create_session(**args, api_key_id=key.id, **caps)
        claim = await self.db.claim(key.id, idempotency_key, "sessions", _idempotency_hash("sessions", args),
                                    new_session=args | caps)
        return await self.db.get_session(claim.session_id, key.id)

    @api.get("/api/v1/sessions/{session_id}", responses=RESPONSES)
    async def get_session(self, session_id: str, request: Request) -> SessionRow:
        key = await self._auth(request)
        return await self.gate.session(session_id, key.id, fresh=True)

    @api.delete("/api/v1/sessions/{session_id}", status_code=204, responses=RESPONSES)
    async def close_session(self, session_id: str, request: Request) -> Response:
        """Close a session: it no longer counts against the key's open sessions, and takes no
        more turns (resuming it is refused)."""
        key = await self._auth(request)
        if not await self.db.close_session(session_id, key.id):
            raise NotFoundError(f"no session {session_id[:64]!r}", code="session_not_found")
        await self.gate.session_closed(session_id, key.id)
        return Response(status_code=204)

    @api.get("/api/v1/sessions/{session_id}/messages", responses=RESPONSES)
    async def get_messages(self, session_id: str, request: Request) -> list[MessageRow]:
        """Every message of the session. Turns are acknowledged only once committed, so this
        shows every turn answered before it (read-your-writes)."""
        key = await self._auth(request)
        await self.gate.session(session_id, key.id)
        return await self.db.messages(session_id)

    @api.post("/api/v1/turn", responses={**RESPONSES, 503: {"model": ErrorOut}})
    async def turn(self, body: TurnBody, request: Request, idempotency_key: str | None = IDEMPOTENCY) -> TurnOut:
        """One turn: audio or text in; transcript, grounded answer, audio (base64 WAV), timings, cost
        out. Answered only once the turn is committed; with an `Idempotency-Key`, a retry returns
        the stored answer instead of running the turn again."""
        key = await self._auth(request)
        key_id = key.id
        if (body.text is None) == (body.audio_base64 is None):
            raise InputError("send exactly one of text or audio_base64", code="invalid_input")
        audio = None
        if body.audio_base64 is not None:
            try:
                audio = base64.b64decode(body.audio_base64, validate=True)
            except (binascii.Error, ValueError):
                raise InputError("audio_base64 is not valid base64", code="audio_unreadable") from None
        if body.language is not None:
            self._language(body.language)
        turn_id = uuid.uuid4().hex  # the server's: a client's id never names (or overwrites) a turn
        session, new_session = None, None
        if body.session_id:  # the caller's own open session, checked before anything is written for it
            session = await self.gate.session(body.session_id, key_id)
            if session.closed_at is not None:
                raise SessionClosed("the session is closed: open a new one")
        else:
            new_session = {"language": body.language or self.settings.default_language, "mode": body.mode or "formal",
                           "voice": body.voice, "output_script": body.output_script} | await self.gate.new_session(key)
        if idempotency_key is not None:
            claim = await self.db.claim(key_id, idempotency_key, "turn", _idempotency_hash("turn", body.model_dump()),
                                        session_id=session.id if session else None, new_session=new_session, new_turn=True)
            if claim.response is not None:
                return TurnOut.model_validate_json(claim.response)
            turn_id = claim.turn_id
            if session is None:  # made by the claim, in its transaction
                session = await self.gate.session(claim.session_id, key_id)
        elif new_session is not None:
            session = await self.db.create_session(**new_session, api_key_id=key_id)
        turn = TurnRequest(
            turn_id=turn_id, request_id=request.state.request_id, idempotent=idempotency_key is not None,
            tenant=str(key_id),
            audio=audio, text=body.text, language=self._language(body.language or session.language),
            mode=body.mode or session.mode, voice=body.voice or session.voice,
            output_script=body.output_script or session.output_script, speak=body.speak,
        )
        t0 = time.perf_counter()
        try:
            # A host that dies mid-turn: the turn runs again on the conversation's next host,
            # with the same turn id (its writes are upserts: nothing doubled).
            out = await remote.call(lambda: self.sessions.answer.remote(session.id, turn))
        except SamvadError:
            metrics.inc("samvad_turns_total", outcome="rejected", channel="rest")
            raise
        metrics.count_turn(out, "rest", (time.perf_counter() - t0) * 1000)
        return out
