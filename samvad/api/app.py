"""The HTTP application: routes, error bodies, request middleware, and /docs served from the
service itself (`fastapi-offline` ships Swagger UI and ReDoc: no CDN, works offline)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from samvad.api import errors, rest, telephony_route, voice_route
from samvad.api.context import RequestContext


def build_api() -> FastAPI:
    app = FastAPIOffline(
        title="Samvad",
        version="0.1.0",
        description="Voice assistant backend for Indian-language customer conversations",
        static_url="/static-docs",
    )
    errors.install(app)
    app.add_middleware(RequestContext)
    app.include_router(rest.router)
    app.include_router(voice_route.router)
    app.include_router(telephony_route.router)
    return app
