"""Phone calls: the carriers' answer webhooks, which return the instruction that opens a media
stream, and the media-stream WebSockets themselves, one per carrier, each mapped onto the voice
call the browser uses (samvad/telephony/). README "Phone numbers" says how to connect one."""

from __future__ import annotations

import asyncio
import logging
from xml.sax.saxutils import escape, quoteattr

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.websockets import WebSocketDisconnect

from samvad.api.frontend import Frontend
from samvad.api.voice_route import _refuse, call_slot, run_call, socket_slot, voice_call
from samvad.call_budget import CallBudget
from samvad.errors import InputError, SamvadError
from samvad.language import AUTO, check_language
from samvad.protocol import (
    CLOSE_BAD_START,
    CLOSE_NOT_FOUND,
    CLOSE_SERVICE_RESTART,
    CLOSE_UNAUTHORIZED,
    AudioFormat,
    SessionStart,
)
from samvad.providers.base import SpeechRequest
from samvad.settings import secret
from samvad.storage.phones import ApiKeyRow, PhoneRoute
from samvad.telephony import signing
from samvad.telephony.base import BadMessage, Carrier, Other, Started
from samvad.telephony.bridge import PhoneSocket
from samvad.telephony.exotel import Exotel
from samvad.telephony.plivo import Plivo
from samvad.telephony.twilio import Twilio
from samvad.uncancelled import uncancelled
from samvad.voice import CallState

log = logging.getLogger("samvad.telephony")
router = APIRouter()
CARRIERS: dict[str, type[Carrier]] = {"twilio": Twilio, "exotel": Exotel, "plivo": Plivo}
PRE_START_MESSAGES = 3  # a carrier sends at most one (Twilio's `connected`) before its start


def _secret(f: Frontend) -> str:
    return secret(f.settings.service, "phone")


def _base(f: Frontend, request: Request) -> str:
    """This service as carriers reach it: `telephony.public_url`, else the request's own host."""
    if f.settings.telephony.public_url:
        return f.settings.telephony.public_url.rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}"


def _ws(base: str) -> str:
    return base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)


def _stream_url(base: str, carrier: str) -> str:
    return _ws(base) + f"/api/v1/telephony/{carrier}"


def _signed_url(base: str, request: Request) -> str:
    """The URL a carrier signed: the one it was given (`base`: this service as reached from outside)."""
    return base + request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _ws_signed_url(f: Frontend, ws: WebSocket) -> str:
    """The stream URL a carrier signed: as this service is reached from outside."""
    public, url = f.settings.telephony.public_url, ws.url
    head = _ws(public.rstrip("/")) if public else f"{url.scheme}://{url.netloc}"
    return head + url.path + (f"?{url.query}" if url.query else "")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def _stream_token(f: Frontend, carrier: str, route_id: int, call_id: str) -> str | JSONResponse:
    """The stream token an answer webhook mints, once per carrier call id (within
    `telephony.replay_window_s`) and bound to that call: a replayed webhook gets a 409."""
    t = f.settings.telephony
    if call_id and not await f.once.first("answer", f"{carrier}:{call_id}", t.replay_window_s):
        return _error(409, "already_answered", "this call was already answered")
    return signing.make(_secret(f), "s", carrier, route_id, t.stream_token_ttl_s, call=call_id)


async def _answer_route(f: Frontend, request: Request, carrier: str) -> PhoneRoute | JSONResponse:
    """The route an answer webhook's token names (Exotel, Plivo: the URL pasted in their console)."""
    token = request.query_params.get("token")
    verdict, route_id = signing.check(_secret(f), token, "a", carrier)
    if verdict == "invalid":
        # An answer URL made before phone tokens had their own secret (pasted in a carrier's
        # console) still answers, and says to remake it: rotating resume_secret ends it.
        legacy, legacy_route = signing.check(secret(f.settings.service, "resume"), token, "a", carrier)
        if legacy == "ok":
            log.warning(
                "%s answer URL of route %s signed the old way: remake it with samvad phone url", carrier, legacy_route
            )
            verdict, route_id = legacy, legacy_route
    if verdict != "ok" or route_id is None:
        await f.gate.failed(f.ip(request), "phone")
        return _error(
            401, "invalid_token", f"the answer URL's token is {verdict}: make a new one with samvad phone url"
        )
    route: PhoneRoute | None = await f.db.phone_route_by_id(route_id)
    if route is None:
        return _error(404, "no_route", "this number is no longer routed (or its API key was revoked)")
    return route


@router.post("/api/v1/telephony/twilio/answer", include_in_schema=False)
async def twilio_answer(request: Request) -> Response:
    """Twilio's voice webhook: checked by its signature, routed by the called number, answered
    with `<Connect><Stream>` to this service."""
    f: Frontend = request.app.state.frontend
    s = f.settings.telephony
    if s.twilio_auth_token is None:
        return _error(503, "not_configured", "set telephony.twilio_auth_token to take Twilio calls")
    form = {k: str(v) for k, v in (await request.form()).items()}
    base = _base(f, request)
    if not signing.twilio_valid(
        s.twilio_auth_token.get_secret_value(),
        _signed_url(base, request),
        form,
        request.headers.get("x-twilio-signature"),
    ):
        await f.gate.failed(f.ip(request), "phone")
        return _error(403, "bad_signature", "X-Twilio-Signature does not match this request")
    if not form.get("CallSid"):
        return _error(400, "no_call_id", "Twilio's voice webhook carries a CallSid")
    route = await f.db.phone_route(form.get("To", ""))
    if route is None:
        twiml = "<Response><Say>This number is not in service.</Say><Hangup/></Response>"
        return Response(twiml, media_type="text/xml")
    token = await _stream_token(f, "twilio", route.id, form["CallSid"])
    if isinstance(token, JSONResponse):
        return token
    params = {"token": token, "from": form.get("From", ""), "to": form.get("To", "")}
    tags = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in params.items())
    twiml = (
        f"<Response><Connect><Stream url={quoteattr(_stream_url(base, 'twilio'))}>{tags}</Stream></Connect></Response>"
    )
    return Response(twiml, media_type="text/xml")


@router.api_route("/api/v1/telephony/plivo/answer", methods=["GET", "POST"], include_in_schema=False)
async def plivo_answer(request: Request) -> Response:
    """Plivo's answer URL (with the route's token; given the account's auth token, signed too):
    a bidirectional μ-law `<Stream>`."""
    f: Frontend = request.app.state.frontend
    form = await request.form()
    base = _base(f, request)
    auth_token = f.settings.telephony.plivo_auth_token
    if auth_token is not None and not signing.plivo_valid(
        auth_token.get_secret_value(),
        request.method,
        _signed_url(base, request),
        {k: [str(v) for v in form.getlist(k)] for k in form},
        request.headers.get("x-plivo-signature-v3-nonce"),
        request.headers.get("x-plivo-signature-v3"),
    ):
        await f.gate.failed(f.ip(request), "phone")
        return _error(403, "bad_signature", "X-Plivo-Signature-V3 does not match this request")
    route = await _answer_route(f, request, "plivo")
    if isinstance(route, JSONResponse):
        return route
    fields = dict(request.query_params) | {k: str(v) for k, v in form.items()}
    if not fields.get("CallUUID"):
        return _error(400, "no_call_id", "Plivo's answer URL is called with a CallUUID")
    token = await _stream_token(f, "plivo", route.id, fields["CallUUID"])
    if isinstance(token, JSONResponse):
        return token
    # extraHeaders take letters and digits only: the numbers go without their "+".
    digits = {k: "".join(c for c in fields.get(k.capitalize(), "") if c.isdigit()) for k in ("from", "to")}
    headers = ",".join(f"{k}={v}" for k, v in {"token": token, **digits}.items() if v)
    xml = (
        '<Response><Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000"'
        f" extraHeaders={quoteattr(headers)}>{escape(_stream_url(base, 'plivo'))}</Stream></Response>"
    )
    return Response(xml, media_type="text/xml")


@router.get("/api/v1/telephony/exotel/answer", include_in_schema=False)
async def exotel_answer(request: Request) -> Response:
    """The Voicebot applet's dynamic URL (with the route's token): `{"url": <stream URL>}`."""
    f: Frontend = request.app.state.frontend
    route = await _answer_route(f, request, "exotel")
    if isinstance(route, JSONResponse):
        return route
    # Exotel's applet fetches this URL with the call's CallSid when it has one: then the token is
    # bound to that call and minted once; without one it is unbound (and still opens one stream).
    token = await _stream_token(f, "exotel", route.id, request.query_params.get("CallSid", "")[:128])
    if isinstance(token, JSONResponse):
        return token
    return JSONResponse({"url": f"{_stream_url(_base(f, request), 'exotel')}?token={token}"})


@router.websocket("/api/v1/telephony/{carrier}")
async def phone_stream(ws: WebSocket, carrier: str) -> None:
    """A carrier's media stream. Admission, cheapest first: the carrier, the client IP's budget
    and socket cap, its start message within `service.ws_auth_timeout_s`, the stream token (in
    the URL or the start's custom parameters), the route and its key's limits."""
    f: Frontend = ws.app.state.frontend
    f.watch_revocations()
    await ws.accept()
    if carrier not in CARRIERS:
        await ws.close(CLOSE_NOT_FOUND, "unknown carrier: twilio, exotel or plivo")
        return
    twilio_token = f.settings.telephony.twilio_auth_token
    if (
        carrier == "twilio"
        and twilio_token is not None
        and not signing.twilio_valid(
            twilio_token.get_secret_value(), _ws_signed_url(f, ws), {}, ws.headers.get("x-twilio-signature")
        )
    ):
        # Twilio signs the stream's WebSocket request as it signs its webhooks (the stream URL).
        await f.gate.failed(f.ip(ws), "phone")
        await ws.close(CLOSE_UNAUTHORIZED, "X-Twilio-Signature does not match this stream")
        return
    async with socket_slot(f, ws) as ip:
        if ip is None:
            return
        phone = PhoneSocket(
            ws,
            CARRIERS[carrier](f.settings.voice.max_binary_bytes),
            f.settings.telephony,
            f.settings.voice.max_text_bytes,
            CallBudget(f.settings.voice),
        )
        started = await _started(f, phone)
        if started is None:
            return
        token = ws.query_params.get("token") or started.params.get("token")
        verdict, route_id = signing.check(_secret(f), token, "s", carrier, call=started.call_id)
        route = await f.db.phone_route_by_id(route_id) if route_id is not None else None
        if route is None:
            await f.gate.failed(ip, "phone")
            await ws.close(CLOSE_UNAUTHORIZED, f"stream token {verdict if verdict != 'ok' else 'for no route'}")
            return
        # One stream per token (one seen on the wire, a log or a proxy, opens nothing more) and
        # one per carrier call, however long after (a replayed webhook's fresh token included).
        t = f.settings.telephony
        if not await f.once.first("stream", token or "", t.stream_token_ttl_s):
            await f.gate.failed(ip, "phone")
            await ws.close(CLOSE_UNAUTHORIZED, "stream token already used")
            return
        if not await f.once.first("call", f"{carrier}:{started.call_id}", t.replay_window_s) or (
            await f.db.phone_call_seen(carrier, started.call_id)
        ):
            await f.gate.failed(ip, "phone")
            await ws.close(CLOSE_UNAUTHORIZED, "this call's stream was already opened")
            return
        await _admit(f, phone, started, route)


async def _started(f: Frontend, phone: PhoneSocket) -> Started | None:
    """The carrier's start message (after its connected message, if it sends one)."""
    try:
        async with asyncio.timeout(f.settings.service.ws_auth_timeout_s):
            for _ in range(PRE_START_MESSAGES + 1):  # before the token is checked: a few messages only
                raw = await phone.ws.receive_text()
                if len(raw) > phone.max_text_bytes:
                    raise BadMessage(f"message over {phone.max_text_bytes} bytes")
                event = phone.carrier.parse(raw)
                if isinstance(event, Started):
                    return event
                if not isinstance(event, Other):
                    raise BadMessage(f"{type(event).__name__} before start")
            raise BadMessage(f"more than {PRE_START_MESSAGES} messages before start")
    except WebSocketDisconnect:
        return None  # the carrier hung up before the stream started
    except (TimeoutError, BadMessage, KeyError, RuntimeError) as exc:
        # Capped: the reason may quote what the caller sent.
        log.warning("%s stream refused: %s", phone.carrier.name, str(exc)[:200])
        await phone.ws.close(CLOSE_BAD_START, "expected the carrier's start message")
        return None


async def _admit(f: Frontend, phone: PhoneSocket, started: Started, route: PhoneRoute) -> None:
    if f.closing.is_set():
        await phone.ws.close(CLOSE_SERVICE_RESTART, "server restarting")
        return
    key = await f.db.active_key(route.api_key_id)
    if key is None:
        await phone.ws.close(CLOSE_UNAUTHORIZED, "the number's API key was revoked")
        return
    async with call_slot(f, phone.ws, key) as held:
        if held:
            await _call(f, phone, started, route, key)


async def _call(f: Frontend, phone: PhoneSocket, started: Started, route: PhoneRoute, key: ApiKeyRow) -> None:
    s = f.settings
    try:
        language = check_language(route.language, s.languages)
        # Refused if no longer served, or no longer the key's to use.
        kb = s.rag.check_knowledge_base(route.knowledge_base, key.knowledge_bases)
        caps = await f.gate.new_session(key)
        row = await f.db.create_session(
            language, route.mode or s.translation.default_mode, route.voice, key.id, None, knowledge_base=kb, **caps
        )
        await f.db.start_phone_call(
            row.id, key.id, phone.carrier.name, started.call_id, started.stream_id, started.caller, started.called
        )
    except (SamvadError, InputError) as exc:
        await _refuse(phone.ws, exc)
        return
    sid = row.id
    encoding = "mulaw" if phone.carrier.encoding == "mulaw" else "pcm16"
    start = SessionStart(
        type="session.start", audio=AudioFormat(encoding=encoding, sample_rate=phone.carrier.sample_rate)
    )
    session = CallState(
        language=row.language, mode=row.mode, voice=row.voice, knowledge_base=row.knowledge_base, tenant=str(key.id)
    )
    call = voice_call(f, phone, sid, key, session, start, played=phone.heard, drain=phone.drain)
    log.info("%s call %s: session %s", phone.carrier.name, started.call_id, sid)
    greeting = None
    if route.greeting:  # the line answers first, in the route's language and voice
        language = s.default_language if row.language == AUTO else row.language
        speech = SpeechRequest(text=route.greeting, language=language, voice=row.voice, tenant=str(key.id))
        greeting = asyncio.create_task(phone.greet(f.backend.synthesize(speech)))
    try:
        await run_call(f, key, call)
    finally:
        if greeting is not None:
            greeting.cancel()
        # The call is over with the line: its record and the session close, whatever ended it.
        await uncancelled(_hung_up(f, sid, key.id, phone.end_reason or "ended"))


async def _hung_up(f: Frontend, sid: str, key_id: int, reason: str) -> None:
    try:
        await f.db.end_phone_call(sid, reason)
        await f.db.close_session(sid, key_id)
    except SamvadError:
        log.exception("phone call %s: its end could not be recorded", sid)
