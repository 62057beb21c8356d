"""Who is calling and what they may do: client addresses, API keys, rate limits, new-session
limits and voice-call admission (docs/security.md).

Order matters for cost: the client IP's bucket is taken first, and an IP that keeps presenting
bad keys is refused before any lookup; a bad key is remembered briefly, so guessing costs a Redis
call, not a database query. Keys are looked up in PostgreSQL (cached 30 s per process); the last
known row is also kept in Redis under a hash of the key, so auth keeps working while the
database restarts. A revoked key is published on a Redis channel: every replica forgets it at
once, closes its live calls, and the last-known fallback refuses it too. Rate limits are Redis
token buckets shared by every replica; concurrent voice calls per key and sockets per IP are
leases in Redis. All of it is plain Python over a `Database` and Redis URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import RedisError

from samvad import metrics
from samvad.api.addresses import client_ip
from samvad.api.call_slots import CallSlots
from samvad.api.revocation import CHANNEL, revoked
from samvad.errors import NotFoundError, RateLimitedError, SamvadError, database_down
from samvad.settings import Settings
from samvad.storage.cache import Cache, cache_key
from samvad.storage.ratelimit import RateLimiter
from samvad.storage.repository import ApiKeyRow, SessionRow

if TYPE_CHECKING:
    from samvad.storage.database import Database

M = TypeVar("M", bound=BaseModel)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger("samvad.gate")

KEY_CACHE_S = 30.0
BAD_KEY_CACHE_S = 10.0  # a key found invalid is not looked up again for this long
SESSION_CACHE_S = 60.0  # a session row's fields change only by its own turns' settings
GONE = b"gone"  # the last-known row of something the database no longer has


class AuthError(SamvadError):
    code = "unauthorized"
    status = 401


class KnowledgeBaseWithdrawn(SamvadError):
    """The session's knowledge base is no longer one its key may use."""

    code = "knowledge_base_not_allowed"
    status = 403


class LimiterUnavailable(SamvadError):
    """Redis is unreachable and the limit fails closed (`limits.fail_open: false`)."""

    code = "rate_limiter_unavailable"
    status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def canonical_session_id(session_id: str) -> str:
    """A session id in the one form the service uses (a lower-case hyphenated UUID)."""
    try:
        return str(uuid.UUID(session_id[:64]))
    except ValueError:
        raise NotFoundError(f"no session {session_id[:64]!r}", code="session_not_found") from None


def _well_formed(key: str | None) -> TypeGuard[str]:
    """What a key can look like: anything else is refused without a lookup of any kind."""
    return key is not None and 0 < len(key) <= 256 and key.isascii() and key.isprintable()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class Gate:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.s = settings
        self.db = db
        rurl, limits = settings.redis_url, settings.limits
        self.limiter = RateLimiter(rurl, fail_open=limits.fail_open) if rurl else None
        self.calls = CallSlots(rurl, limits, settings.voice.max_sessions_per_key)  # sockets and live calls
        self.rows = Cache(rurl, {"row": 600}) if rurl else None
        self._redis = aioredis.Redis.from_url(rurl, socket_connect_timeout=0.5, socket_timeout=2.0) if rurl else None
        self._keys: dict[str, tuple[float, ApiKeyRow]] = {}  # sha256(key) -> (expiry, row)
        self._bad: dict[str, float] = {}  # sha256(key) -> expiry
        self._sessions: dict[tuple[int, str], tuple[float, SessionRow]] = {}
        self._current: dict[int, tuple[float, ApiKeyRow]] = {}  # key id -> (re-read at, row)
        self._on_revoked: list[Callable[[int], None]] = []

    # client addresses and keys ------------------------------------------------------------------
    def ip(self, peer: str | None, forwarded_for: str | None) -> str:
        return client_ip(peer, forwarded_for, self.s.service.trusted_proxies)

    async def key(self, key: str | None) -> ApiKeyRow | None:
        if not _well_formed(key):
            return None
        digest, now = _digest(key), time.monotonic()
        cached = self._keys.get(digest)
        if cached and cached[0] > now:
            return cached[1]
        if self._bad.get(digest, 0) > now:
            return None
        row = await self.last_known("apikey", key, ApiKeyRow, lambda: self.db.verify_key(key))
        if row is not None and row.revoked_at is None:
            _bounded(self._keys)[digest] = (now + KEY_CACHE_S, row)
            return row
        _bounded(self._bad)[digest] = now + BAD_KEY_CACHE_S
        return None

    async def admit_ip(self, ip: str) -> bool:
        """The IP's request bucket (raises when spent); returns whether the IP has used up its
        failed key lookups (one wait for both)."""
        limits = self.s.limits
        _, locked = await asyncio.gather(
            self._take("ip", f"ip:{ip}", limits.ip_requests_per_minute, fail_open=limits.ip_fail_open),
            self._locked_out(ip),
        )
        return locked

    async def _locked_out(self, ip: str) -> bool:
        try:
            await self._take(
                "auth_failures",
                f"authfail:{ip}",
                self.s.limits.auth_failures_per_minute,
                fail_open=self.s.limits.ip_fail_open,
                peek=True,
            )
        except RateLimitedError:
            return True
        return False

    async def admit(self, key: str | None, ip: str) -> ApiKeyRow:
        """The caller's key, after the client IP's limits and then the key's."""
        locked = await self.admit_ip(ip)
        if not key:
            raise AuthError("missing API key: send it in the X-API-Key header")
        row = await self.lookup(key, ip, locked=locked)
        if row is None:
            raise AuthError("invalid or revoked API key")
        await self.charge(row)
        return row

    async def lookup(self, key: str | None, ip: str, *, locked: bool | None = None) -> ApiKeyRow | None:
        """`key`'s row, or None (a failure counted against `ip`). An address that keeps
        presenting bad keys (a NAT, a carrier's egress, an address an attacker shares) gets no new
        lookup, but a key already verified (by this replica, or by any, from Redis) is still
        admitted from it: the failures are counted, the good keys are not locked out."""
        if locked is None:
            locked = await self._locked_out(ip)
        if locked:
            row = await self.known_key(key or "")
            if row is None:  # counted by _locked_out's refusal already
                raise RateLimitedError("too many failed API-key attempts from this address; retry later", 60.0)
            return row
        row = await self.key(key)
        if row is None:
            await self.failed(ip)
        return row

    async def known_key(self, key: str) -> ApiKeyRow | None:
        """`key`'s row if it was verified before (this process's cache, or the last-known row in
        Redis) and is not revoked; never a database lookup."""
        if not _well_formed(key):
            return None
        cached = self._keys.get(_digest(key))
        if cached and cached[0] > time.monotonic():
            return cached[1]
        if self.rows is None:
            return None
        raw = await self.rows.get(cache_key("row:apikey", key))
        if raw is None or raw == GONE:
            return None
        row = ApiKeyRow.model_validate_json(raw)
        if row.revoked_at is not None or await self._revoked(row.id):
            return None
        return row

    async def failed(self, ip: str, scope: str = "api_key") -> None:
        """Count a failed key lookup against the IP (its `auth_failures_per_minute`). Refused phone
        credentials (`scope="phone"`) are only counted in the metric: a carrier's egress address
        carries every tenant's calls, so one route's expired token must not lock out the others,
        and nothing phone-side is guessable (signatures, HMAC tokens) for a lockout to slow."""
        metrics.inc("samvad_auth_failures_total", scope=scope)
        if self.limiter is not None and scope == "api_key":
            await self.limiter.take(f"authfail:{ip}", self.s.limits.auth_failures_per_minute, fail_open=True)

    async def charge(self, row: ApiKeyRow) -> None:
        """One request against the key's rate limit (a voice turn, say)."""
        await self._take("key", f"key:{row.id}", row.requests_per_minute or self.s.limits.requests_per_minute)

    async def charge_speculative(self, row: ApiKeyRow) -> bool:
        """One piece of speculative ASR work (an early transcript, a partial) against the key's
        bucket for it (`limits.speculative_asr_per_minute`): False when spent (the work is
        skipped; the turn's own transcription still comes). Apart from its requests, so that it
        never starves turns."""
        try:
            await self._take("speculative_asr", f"asrwork:{row.id}", self.s.limits.speculative_asr_per_minute)
        except (RateLimitedError, LimiterUnavailable):
            return False
        return True

    async def new_session(self, row: ApiKeyRow) -> dict[str, Any]:
        """Charge the key's new-session limit; returns the open-session cap for `create_session`."""
        await self._take(
            "new_session", f"newsession:{row.id}", row.sessions_per_minute or self.s.limits.sessions_per_minute
        )
        return {
            "max_open": row.max_open_sessions or self.s.limits.max_open_sessions,
            "open_s": self.s.limits.session_open_s,
        }

    async def _take(
        self, scope: str, bucket: str, per_minute: int, *, fail_open: bool | None = None, peek: bool = False
    ) -> None:
        if self.limiter is None:
            return
        decision = await self.limiter.take(bucket, per_minute, fail_open=fail_open, peek=peek)
        if decision.degraded:
            metrics.inc("samvad_rate_limit_degraded_total", policy="open" if decision.allowed else "closed")
            if not decision.allowed:
                raise LimiterUnavailable(
                    f"the {scope} rate limit cannot be checked right now; retry shortly", decision.retry_after_s
                )
        if not decision.allowed:
            metrics.inc("samvad_rate_limited_total", scope=scope)
            what = (
                "too many failed API-key attempts from this address"
                if scope == "auth_failures"
                else f"rate limit of {per_minute} per minute per {scope} reached"
            )
            raise RateLimitedError(f"{what}; retry later", decision.retry_after_s)

    async def recheck(self, key: ApiKeyRow, knowledge_base: str | None) -> ApiKeyRow:
        """Before a turn or a resume on a session of `key`: the key's row as it is now (re-read at
        most every `limits.key_recheck_s`). A key revoked meanwhile is refused, and its live calls
        on this replica end, even if the revocation's broadcast never arrived; a session whose
        knowledge base the key may no longer use is refused (without naming the others)."""
        now = time.monotonic()
        cached = self._current.get(key.id)
        if cached is None or now - cached[0] >= self.s.limits.key_recheck_s:
            try:
                row = await self.db.get_key(key.id)
            except Exception as exc:
                if not database_down(exc):
                    raise
                row = None if await self._revoked_known(key.id) else key
            if row is None:
                self.forget_key(key.id)
                raise AuthError("the API key was revoked")
            _bounded(self._current)[key.id] = (now, row)
            cached = (now, row)
        current = cached[1]
        if not self.s.rag.permits(knowledge_base, current.knowledge_bases):
            raise KnowledgeBaseWithdrawn("this session's knowledge base is no longer available to this API key")
        return current

    # revocation ---------------------------------------------------------------------------------
    def on_revoked(self, callback: Callable[[int], None]) -> None:
        self._on_revoked.append(callback)

    def forget_key(self, key_id: int) -> None:
        """Drop everything this process remembers of the key and tell the listeners (live calls)."""
        self._current.pop(key_id, None)
        for digest, (_, row) in list(self._keys.items()):
            if row.id == key_id:
                del self._keys[digest]
        for k in [k for k in self._sessions if k[0] == key_id]:
            del self._sessions[k]
        for callback in self._on_revoked:
            callback(key_id)

    def _apply(self, message: str) -> None:
        kind, *args = message.split()
        if kind == "key":
            self.forget_key(int(args[0]))
        elif kind == "session":
            self.forget_session(args[1], int(args[0]))

    async def watch_revocations(self) -> None:
        """Forever: apply what `samvad keys revoke` and closed sessions publish (any replica, node)."""
        while self._redis is not None:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._apply(message["data"].decode())
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ValueError) as exc:
                log.warning("revocation channel lost (%s); resubscribing", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _revoked_known(self, key_id: int) -> bool:
        """The database cannot say (an outage): Redis's revoked set does, and neither side's
        silence is a reason to cut a live call."""
        return await revoked(self._redis, key_id, when_unsure=False)

    async def _revoked(self, key_id: int) -> bool:
        # Neither the database nor Redis can vouch for a key to admit: refuse it.
        return await revoked(self._redis, key_id, when_unsure=True)

    # sessions -----------------------------------------------------------------------------------
    async def session(self, session_id: str, key_id: int, *, fresh: bool = False) -> SessionRow:
        """The session if this key owns it; any other is `session_not_found`, exactly like one
        that does not exist. Kept for a minute per process: a turn on a known session reads nothing.
        The id is canonicalised first: the same session spelled otherwise (upper case, braces, no
        hyphens) is the same cache entry, never a second one, and anything else is not found."""
        session_id = canonical_session_id(session_id)
        cached = self._sessions.get((key_id, session_id))
        if cached and not fresh and cached[0] > time.monotonic():
            return cached[1]
        row = await self.last_known(
            "session", f"{key_id}:{session_id}", SessionRow, lambda: self.db.get_session(session_id, key_id)
        )
        if row is None:  # a remembered tombstone (get_session itself raises for a missing one)
            raise NotFoundError(f"no session {session_id!r}", code="session_not_found")
        _bounded(self._sessions)[(key_id, session_id)] = (time.monotonic() + SESSION_CACHE_S, row)
        return row

    def forget_session(self, session_id: str, key_id: int) -> None:
        with contextlib.suppress(NotFoundError):
            self._sessions.pop((key_id, canonical_session_id(session_id)), None)

    async def session_closed(self, session_id: str, key_id: int) -> None:
        """Every replica drops its cached row of a session just closed (kept a minute otherwise),
        and the last-known row in Redis goes too, so no replica takes another turn for it."""
        session_id = canonical_session_id(session_id)
        self.forget_session(session_id, key_id)
        if self._redis is None:
            return
        try:
            await self._redis.delete(cache_key("row:session", f"{key_id}:{session_id}"))
            await self._redis.publish(CHANNEL, f"session {key_id} {session_id}")
        except (RedisError, OSError) as exc:
            log.warning("closed session not broadcast (%s): other replicas see it within a minute", type(exc).__name__)

    async def last_known(
        self, kind: str, ident: str, model: type[M], read: Callable[[], Awaitable[M | None]]
    ) -> M | None:
        """A row read from the database and remembered in Redis (under a hash of its id): while
        the database is down, the last known row keeps auth and session lookups working. A key
        found revoked is forgotten at once, and a remembered key revoked since is refused."""
        ck = cache_key(f"row:{kind}", ident)
        try:
            row = await read()
        except Exception as exc:
            if self.rows is None or not database_down(exc):
                raise
            raw = await self.rows.get(ck)
            if raw is None:
                raise
            if raw == GONE:
                return None
            row = model.model_validate_json(raw)
            if isinstance(row, ApiKeyRow) and await self._revoked(row.id):
                return None
            return row
        if self.rows is not None:
            if row is None:
                # A key that was known and is gone (revoked) leaves a tombstone: during a database
                # outage it is refused (401) instead of "cannot check" (503), whether or not this
                # replica still remembers it as bad. Unknown keys (guesses) leave nothing behind.
                if await self.rows.delete(ck):
                    await self.rows.set("row", ck, GONE)
            else:
                await self.rows.set("row", ck, row.model_dump_json().encode())
        return row


def _bounded(cache: dict[K, V], limit: int = 10_000) -> dict[K, V]:
    """`cache`, its oldest entries dropped once it holds `limit`."""
    if len(cache) >= limit:
        for k in list(cache)[: limit // 10]:
            del cache[k]
    return cache
