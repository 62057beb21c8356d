"""Token-bucket rate limits held in Redis, so every ingress replica shares them exactly.

One Lua script refills and takes a token atomically on the server (using Redis' clock, not the
replicas'), which is what makes the limit exact under concurrent replicas. When Redis is
unreachable the limiter fails open or closed as configured, and counts it. A slow Redis is not a
down one: a connection that cannot be made fails within `CONNECT_TIMEOUT_S`, but an answer is
waited for up to `READ_TIMEOUT_S` (a saturated box answers late, and failing open then would
lift every limit exactly when the service is busiest)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("samvad.ratelimit")

CONNECT_TIMEOUT_S = 0.5
READ_TIMEOUT_S = 5.0


def _client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, socket_timeout=READ_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S)


# KEYS[1] bucket; ARGV: capacity, refill per second, cost (1 takes a token, 0 only looks).
# Returns {allowed, retry_after_ms}.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - tonumber(ARGV[3])
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate) + 1000)
return {allowed, wait}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0
    degraded: bool = False  # Redis was unreachable; the configured failure policy decided


class RateLimiter:
    def __init__(self, url: str, *, fail_open: bool = True) -> None:
        self._redis = _client(url)
        self._script = self._redis.register_script(_SCRIPT)
        self.fail_open = fail_open

    async def take(
        self,
        bucket: str,
        per_minute: int,
        burst: int | None = None,
        *,
        fail_open: bool | None = None,
        peek: bool = False,
    ) -> Decision:
        """Take one token from `bucket`, refilled at `per_minute`, holding up to `burst` (`peek`:
        only say whether one is there). `fail_open` overrides the limiter's failure policy."""
        try:
            allowed, wait_ms = await self._script(
                keys=[f"samvad:rl:{bucket}"], args=[burst or per_minute, per_minute / 60, 0 if peek else 1]
            )
        except (RedisError, OSError) as exc:
            opened = self.fail_open if fail_open is None else fail_open
            log.warning("rate limiter unavailable (%s): failing %s", type(exc).__name__, "open" if opened else "closed")
            return Decision(allowed=opened, retry_after_s=0.0 if opened else 1.0, degraded=True)
        return Decision(allowed=bool(allowed), retry_after_s=int(wait_ms) / 1000)

    async def close(self) -> None:
        await self._redis.aclose()


# KEYS[1] the key's live-session set; ARGV: member, limit, lease ms. Members score by lease
# expiry: a replica that dies without saying goodbye stops holding slots when its leases lapse.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return 1
"""


class SessionSlots:
    """Concurrent voice sessions per API key, counted in Redis across every ingress replica.

    A session holds a slot by lease: `admit` takes (or renews) it, the call renews it every
    `lease_s / 3` while it lives, and `release` frees it at once when it ends."""

    def __init__(self, url: str, *, fail_open: bool = True, lease_s: float = 30.0) -> None:
        self._redis = _client(url)
        self._script = self._redis.register_script(_ADMIT)
        self.fail_open = fail_open
        self.lease_s = lease_s

    async def admit(self, owner: int | str, session: str, limit: int, *, fail_open: bool | None = None) -> Decision:
        """A slot for `session` among `owner`'s (an API key id, or `ip:<address>`)."""
        try:
            ok = await self._script(keys=[f"samvad:live:{owner}"], args=[session, limit, int(self.lease_s * 1000)])
        except (RedisError, OSError) as exc:
            opened = self.fail_open if fail_open is None else fail_open
            log.warning(
                "session slots unavailable (%s): failing %s", type(exc).__name__, "open" if opened else "closed"
            )
            return Decision(allowed=opened, retry_after_s=0.0 if opened else 1.0, degraded=True)
        return Decision(allowed=bool(ok))

    async def release(self, owner: int | str, session: str) -> None:
        try:
            await self._redis.zrem(f"samvad:live:{owner}", session)
        except (RedisError, OSError):
            pass  # the lease lapses by itself

    async def close(self) -> None:
        await self._redis.aclose()
