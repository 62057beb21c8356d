"""Who is calling and what they may do: API keys, rate limits and voice-call admission.

Keys are looked up in PostgreSQL (cached for 30 s per process); the last known row is also kept
in Redis under a hash of the key, so auth keeps working while the database restarts. Rate limits
are Redis token buckets shared by every ingress replica; concurrent voice calls per key are
leases in Redis too. All of it is plain Python over a `Database` and Redis URLs.
"""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel

from samvad import metrics
from samvad.errors import RateLimitedError, SamvadError, database_down
from samvad.settings import Settings
from samvad.storage.cache import Cache, cache_key
from samvad.storage.ratelimit import RateLimiter, SessionSlots
from samvad.storage.repository import ApiKeyRow, SessionRow

KEY_CACHE_S = 30.0
SESSION_CACHE_S = 60.0  # a session row's fields change only by its own turns' settings


class AuthError(SamvadError):
    code = "unauthorized"
    status = 401


class Gate:
    def __init__(self, settings: Settings, db) -> None:
        self.s = settings
        self.db = db
        rurl, fail_open = settings.redis_url, settings.limits.fail_open
        self.limiter = RateLimiter(rurl, fail_open=fail_open) if rurl else None
        self.slots = SessionSlots(rurl, fail_open=fail_open) if rurl else None
        self.rows = Cache(rurl, {"row": 600}) if rurl else None
        self._keys: dict[str, tuple[float, ApiKeyRow]] = {}
        self._sessions: dict[tuple[int, str], tuple[float, SessionRow]] = {}
        self._live: dict[int, int] = {}  # API key id -> open voice calls on this replica

    # keys ---------------------------------------------------------------------------------------
    async def key(self, key: str | None) -> ApiKeyRow | None:
        if not key or len(key) > 256:
            return None
        cached = self._keys.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        row = await self.last_known("apikey", key, ApiKeyRow, lambda: self.db.verify_key(key))
        if row is not None:
            _bounded(self._keys)[key] = (time.monotonic() + KEY_CACHE_S, row)
        return row

    async def admit(self, key: str | None, ip: str) -> ApiKeyRow:
        """The caller's key, after the key's and the client IP's rate limits."""
        if not key:
            raise AuthError("missing API key: send it in the X-API-Key header")
        row = await self.key(key)
        if row is None:
            raise AuthError("invalid or revoked API key")
        limits = self.s.limits
        await asyncio.gather(  # both buckets at once: one Redis round trip of waiting, not two
            self._take("key", f"key:{row.id}", row.requests_per_minute or limits.requests_per_minute),
            self._take("ip", f"ip:{ip}", limits.ip_requests_per_minute),
        )
        return row

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

    # sessions -----------------------------------------------------------------------------------
    async def session(self, session_id: str, key_id: int, *, fresh: bool = False) -> SessionRow:
        """The session if this key owns it; any other is `session_not_found`, exactly like one
        that does not exist. Kept for a minute per process: a turn on a known session reads nothing."""
        cached = self._sessions.get((key_id, session_id))
        if cached and not fresh and cached[0] > time.monotonic():
            return cached[1]
        row = await self.last_known("session", f"{key_id}:{session_id}", SessionRow,
                                    lambda: self.db.get_session(session_id, key_id))
        _bounded(self._sessions)[(key_id, session_id)] = (time.monotonic() + SESSION_CACHE_S, row)
        return row

    async def last_known(self, kind: str, ident: str, model: type[BaseModel], read):
        """A row read from the database and remembered in Redis (under a hash of its id): while
        the database is down, the last known row keeps auth and session lookups working. A key
        found revoked is forgotten at once."""
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

    # voice calls --------------------------------------------------------------------------------
    async def open_call(self, key: ApiKeyRow, slot: str) -> bool:
        """A slot among the key's concurrent voice calls, counted across replicas in Redis."""
        limit = key.max_voice_sessions or self.s.voice.max_sessions_per_key
        if self.slots is None:
            allowed = self._live.get(key.id, 0) < limit
        else:
            decision = await self.slots.admit(key.id, slot, limit)
            if decision.degraded:
                metrics.inc("samvad_rate_limit_degraded_total", policy="open" if decision.allowed else "closed")
            allowed = decision.allowed
        if allowed:
            self._live[key.id] = self._live.get(key.id, 0) + 1
            metrics.gauge("samvad_live_voice_sessions", sum(self._live.values()))
        return allowed

    async def keep_call(self, key: ApiKeyRow, slot: str) -> None:
        """Renew the call's lease while it lasts (a replica that dies stops holding its slots)."""
        limit = key.max_voice_sessions or self.s.voice.max_sessions_per_key
        while self.slots is not None:
            await asyncio.sleep(self.slots.lease_s / 3)
            await self.slots.admit(key.id, slot, limit)

    async def close_call(self, key: ApiKeyRow, slot: str) -> None:
        self._live[key.id] -= 1
        metrics.gauge("samvad_live_voice_sessions", sum(self._live.values()))
        if self.slots is not None:
            await self.slots.release(key.id, slot)


def _bounded(cache: dict, limit: int = 10_000) -> dict:
    """`cache`, its oldest entries dropped once it holds `limit`."""
    if len(cache) >= limit:
        for k in list(cache)[: limit // 10]:
            del cache[k]
    return cache
