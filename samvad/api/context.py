"""What every HTTP request goes through before its route: request id, CORS, the body budget, the
admin key on operations routes, admission (the address's bucket, the key, the key's bucket, all
from the headers: nothing of the body is read for a caller without a valid key), the body's read
deadline, the latency metric and the replica header."""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from fastapi.responses import Response
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from samvad import metrics
from samvad.api.errors import error_response, samvad_error
from samvad.errors import SamvadError

OPS_PATHS = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
KEYED_PREFIX = "/api/v1/"  # every HTTP route under it takes an API key ...
UNKEYED_PREFIX = "/api/v1/telephony/"  # ... but the carriers' webhooks (their own signatures and tokens)
PHONE_BODY_BYTES = 64 * 1024  # a carrier's webhook form (Twilio's and Plivo's are a few KB)


def keyed(path: str) -> bool:
    return path.startswith(KEYED_PREFIX) and not path.startswith(UNKEYED_PREFIX)


class BodyTooLarge(HTTPException):  # FastAPI's own: its body parser re-raises it as it is
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyTooSlow(HTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s")


def origin_allowed(origin: str, host: str, app: Starlette) -> bool:
    """Same origin (the demo page is served here) or one of `service.cors_origins`."""
    return urlsplit(origin).netloc == host or origin in getattr(app.state, "cors_origins", [])


def cors_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Vary": "Origin",
        "Access-Control-Allow-Methods": "GET, POST, DELETE",
        "Access-Control-Allow-Headers": "X-API-Key, Content-Type, X-Request-ID, Idempotency-Key",
        "Access-Control-Max-Age": "600",
    }


class RequestContext:
    """Plain ASGI rather than `@app.middleware("http")` (Starlette's BaseHTTPMiddleware runs each
    request through an extra task and stream): this is on every turn's path. Settings come from
    `app.state` (max_body_bytes, cors_origins, admin_key, replica)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
        allowed = origin is not None and origin_allowed(origin, request.headers.get("host", ""), scope["app"])
        if request.method == "OPTIONS" and origin is not None:  # CORS preflight
            response = (
                error_response(request, 403, "origin_not_allowed", f"origin {origin} may not call this API")
                if not allowed
                else Response(status_code=204, headers=cors_headers(origin))
            )
            await response(scope, receive, send)
            return
        # Every answer from here on, refusals included, names its replica and carries CORS headers
        # (a browser reads a 401's body only with them).
        extra = [(b"x-samvad-replica", getattr(state, "replica", "").encode())]  # which replica answered (ops)
        if allowed and origin is not None:
            extra += [(k.lower().encode(), v.encode()) for k, v in cors_headers(origin).items()]
        t0, status = time.perf_counter(), 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        # A carrier's webhook is a small form: its routes take far less than the API's bodies.
        phone = scope["path"].startswith(UNKEYED_PREFIX)
        limit = PHONE_BODY_BYTES if phone else getattr(state, "max_body_bytes", 8 << 20)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await error_response(request, 413, "payload_too_large", f"the request body is larger than {limit} bytes")(
                scope, receive, send_with_headers
            )
            return
        admin = getattr(state, "admin_key", None)
        if (
            admin
            and scope["path"] in OPS_PATHS
            and not hmac.compare_digest(request.headers.get("x-admin-key", "").encode(), admin.encode())
        ):
            await error_response(
                request, 401, "admin_key_required", "this operations route needs the X-Admin-Key header"
            )(scope, receive, send_with_headers)
            return
        front = getattr(state, "frontend", None)
        if front is not None and (phone or keyed(scope["path"])):
            try:
                if phone:  # no key there (signatures and tokens): the address's bucket still applies
                    await front.gate.admit_ip(front.ip(request))
                else:
                    request.state.api_key = await front.auth(request)
            except SamvadError as exc:
                await (await samvad_error(request, exc))(scope, receive, send_with_headers)
                return
        received, body_done = 0, False
        loop = asyncio.get_running_loop()
        # The deadline grows with the length declared (at 100 KB/s): a big upload on a slow
        # mobile link still arrives, a body that never does holds nothing for long.
        allowed_s = getattr(state, "body_read_s", 30.0) + (int(length) if length else 0) / 100_000
        deadline = loop.time() + allowed_s

        async def counted() -> Message:  # the budget holds for the bytes that arrive, chunked uploads included
            nonlocal received, body_done
            if body_done:  # after the body: waits for a disconnect, which has no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise BodyTooSlow(allowed_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                body_done = not message.get("more_body", False)
            return message

        try:
            await self.app(scope, counted, send_with_headers)
        finally:
            route = scope.get("route")
            metrics.observe(
                "samvad_http_ms",
                (time.perf_counter() - t0) * 1000,
                route=getattr(route, "path", "unmatched"),
                status=str(status),
            )
        # No X-Request-ID here: Serve's proxy passes the client's id (or one it made) to us and sets
        # the same id on every response; adding ours would send the header twice.
