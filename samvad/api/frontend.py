"""What the ingress knows and does between requests, without Ray: settings, its database pool,
the gate, the live voice calls, drain state, and the `Backend` that runs turns and stages.

The ingress deployment gives it a backend over Serve handles; tests give it one that runs the
turn in-process, and drive the routes with Starlette's TestClient.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from samvad.api import tokens
from samvad.api.gate import Gate
from samvad.audio import Audio
from samvad.contracts import ProviderCall, Transcript
from samvad.errors import DatabaseUnavailable, SamvadError
from samvad.events import TurnEvent
from samvad.language import check_language
from samvad.protocol import CLOSE_UNAUTHORIZED
from samvad.providers.base import AudioChunk, SpeechRequest
from samvad.providers.registry import build_listener
from samvad.settings import Settings, secret
from samvad.stages import StageReport
from samvad.storage.database import Database
from samvad.storage.once import Once
from samvad.storage.repository import ApiKeyRow
from samvad.turn import TurnRequest
from samvad.turn_result import TurnOut
from samvad.voice import VoiceCall


class Backend(Protocol):
    """Where turns run (the conversation's host) and the stages the ingress calls itself."""

    async def answer(self, session_id: str, request: TurnRequest) -> TurnOut: ...
    def stream(self, session_id: str, request: TurnRequest) -> AsyncIterator[TurnEvent]: ...
    async def settle(self, session_id: str, turn_id: str, heard: str, complete: bool) -> None: ...
    async def transcribe(self, audio: Audio, language: str | None) -> tuple[Transcript, list[ProviderCall]]: ...
    async def partial(self, audio: Audio, language: str | None) -> Transcript | None: ...
    def synthesize(self, speech: SpeechRequest) -> AsyncIterator[AudioChunk | StageReport]: ...
    def metrics_url(self) -> str: ...


class Frontend:
    def __init__(self, settings: Settings, db: Database, backend: Backend, *, replica: str = "") -> None:
        self.settings, self.db, self.backend, self.replica = settings, db, backend, replica
        self.gate = Gate(settings, db)
        self.once = Once(settings.redis_url)  # phone webhooks and stream tokens: each taken once
        self.listener = build_listener(settings)  # voice calls' realtime recogniser, if configured
        self.gate.on_revoked(self._revoked)
        self._resume_secret = secret(settings.service, "resume")
        self._watch: asyncio.Task[None] | None = None
        self._live: dict[int, set[VoiceCall]] = {}  # API key id -> its calls on this replica
        self._ready: tuple[float, bool] = (0.0, False)  # /readyz: (checked at, ok), one ping per second
        self._ready_lock = asyncio.Lock()
        self._metrics: tuple[float, str] = (0.0, "")  # /metrics: (read at, text), one read per second
        self._metrics_lock = asyncio.Lock()
        self.closing = asyncio.Event()  # set by `drain`: live calls end, new ones are refused
        self.calls = 0

    def configure(self, app: Starlette) -> None:
        """The request middleware's settings (it reads them from `app.state`)."""
        s = self.settings.service
        app.state.frontend = self
        app.state.max_body_bytes = s.max_body_bytes
        app.state.body_read_s = s.body_read_s
        app.state.cors_origins = s.cors_origins
        app.state.admin_key = s.admin_key.get_secret_value() if s.admin_key else None
        app.state.replica = self.replica

    def ip(self, conn: HTTPConnection) -> str:
        # Proxies may append their own X-Forwarded-For line (HAProxy's `option forwardfor` does):
        # the lines in order are one list, the last the nearest hop.
        forwarded = ", ".join(conn.headers.getlist("x-forwarded-for")) or None
        return self.gate.ip(conn.client.host if conn.client else None, forwarded)

    async def auth(self, conn: HTTPConnection, key: str | None = None) -> ApiKeyRow:
        """The caller's key, from the X-API-Key header only (a key in a URL ends up in logs)."""
        self.watch_revocations()
        return await self.gate.admit(key if key is not None else conn.headers.get("x-api-key"), self.ip(conn))

    def watch_revocations(self) -> None:
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(self.gate.watch_revocations())

    def _revoked(self, key_id: int) -> None:
        for call in list(self._live.get(key_id, ())):
            call.end(CLOSE_UNAUTHORIZED, "API key revoked")

    def add_call(self, key_id: int, call: VoiceCall) -> None:
        self._live.setdefault(key_id, set()).add(call)

    def drop_call(self, key_id: int, call: VoiceCall) -> None:
        live = self._live.get(key_id, set())
        live.discard(call)
        if not live:
            self._live.pop(key_id, None)

    def language(self, language: str) -> str:
        """A language of the service, or "auto" (detected per utterance)."""
        return check_language(language, self.settings.languages)

    def resume_token(self, session_id: str, key_id: int) -> str:
        return tokens.make(self._resume_secret, session_id, key_id, self.settings.service.resume_token_ttl_s)

    def check_resume(self, token: str | None, session_id: str, key_id: int) -> str:
        return tokens.check(self._resume_secret, token, session_id, key_id)

    def drain(self, on: bool = True) -> int:
        """Shutdown: live calls end after the answer playing, told how to resume; new calls are
        refused. `drain(False)` takes new calls again. Returns the live calls."""
        if on:
            self.closing.set()
        elif self.closing.is_set():
            self.closing = asyncio.Event()
        return self.calls

    async def ready(self) -> None:
        """Ready when the database answers one ping: within 2 s, or 0.5 s while it is known to be
        down (a stopped server refuses at once; a hung one must not hold the probe). Asked without
        a key, so the answer is reused for a second: a flood of probes is one ping."""
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

    async def metrics_text(self, read: Callable[[], Awaitable[str]]) -> str:
        """The node's metrics, read again only when the last read (or failure) is a second old:
        while the agent is away, scrapes do not queue behind its timeout one after another."""
        async with self._metrics_lock:
            at, text = self._metrics
            if time.monotonic() - at >= 1.0:
                try:
                    text = await read()
                except SamvadError:
                    self._metrics = (time.monotonic(), "")
                    raise
                self._metrics = (time.monotonic(), text)
            if not text:
                raise SamvadError("the node's metrics agent did not answer", code="metrics_unavailable")
            return text

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await self.db.close()
