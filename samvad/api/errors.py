"""Every HTTP error as one JSON body a client can act on: `{"error": {code, message, request_id}}`."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from samvad.api.gate import LimiterUnavailable
from samvad.errors import ProviderError, RateLimitedError, SamvadError, public_message

log = logging.getLogger("samvad.ingress")

HTTP_CODES = {
    404: "not_found",
    408: "request_timeout",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(request: Request, status: int, code: str, message: str) -> JSONResponse:
    rid = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    return JSONResponse({"error": {"code": code, "message": message, "request_id": rid}}, status_code=status)


def _expected_media(request: Request) -> str | None:
    """What the matched route's body must be: "application/json" or "multipart/form-data"."""
    route = request.scope.get("route")
    field = getattr(route, "body_field", None) if isinstance(route, APIRoute) else None
    if field is None:
        return None
    return getattr(field.field_info, "media_type", None) or "application/json"


def _validation_message(error: Mapping[str, Any]) -> str:
    if error.get("type") == "json_invalid":  # loc is ("body", <character offset>)
        at = error.get("loc", ("body", "?"))[-1]
        why = (error.get("ctx") or {}).get("error", "not valid JSON")
        return f"the body is not valid JSON: {why} at character {at}"
    # Capped: a location names the client's own keys, which may be of any length.
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")[:100]
    return f"{where}: {str(error.get('msg', 'invalid request'))[:200]}".strip(": ")


async def samvad_error(request: Request, exc: SamvadError) -> JSONResponse:
    # An error raised in another replica arrives wrapped by Ray; its `cause` is the original.
    cause = getattr(exc, "cause", None)
    exc = cause if isinstance(cause, SamvadError) else exc
    if isinstance(exc, ProviderError):  # its own text stays in the log (errors.public_message)
        log.warning("provider error request_id=%s: %s", getattr(request.state, "request_id", None), exc.message)
    response = error_response(request, exc.status, exc.code, public_message(exc))
    if isinstance(exc, (RateLimitedError, LimiterUnavailable)):
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    expected = _expected_media(request)
    sent = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if expected and sent != expected and any(e.get("loc", ("",))[0] == "body" for e in exc.errors()):
        return error_response(
            request,
            415,
            "unsupported_media_type",
            f"send the body as {expected}" + (f", not {sent}" if sent else " (Content-Type is missing)"),
        )
    first = exc.errors()[0] if exc.errors() else {}
    return error_response(request, 422, "validation_error", _validation_message(first))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(request, exc.status_code, HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error request_id=%s", getattr(request.state, "request_id", None))
    return error_response(
        request, 500, "internal_error", "an internal error occurred; quote the request id when reporting it"
    )


def install(app: FastAPI) -> None:
    # Starlette types a handler as taking any Exception; it calls each with its own class only.
    app.add_exception_handler(SamvadError, samvad_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
