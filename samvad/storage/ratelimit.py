"""Token-bucket rate limits held in Redis, so every ingress replica shares them exactly.

One Lua script refills and takes a token atomically on the server (using Redis' clock, not the
replicas'), which is what makes the limit exact under concurrent replicas. When Redis is
unreachable the limiter fails open or closed as configured, and counts it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("samvad.ratelimit")

# KEYS[1] bucket; ARGV: capacity, refill per second. Returns {allowed, retry_after_ms}.
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
  tokens = tokens - 1
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
        self._redis = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_SCRIPT)
        self.fail_open = fail_open

    async def take(self, bucket: str, per_minute: int, burst: int | None = None) -> Decision:
        """Take one token from `bucket`, refilled at `per_minute`, holding up to `burst`."""
        try:
            allowed, wait_ms = await self._script(keys=[f"samvad:rl:{bucket}"], args=[burst or per_minute, per_minute / 60])
        except (RedisError, OSError) as exc:
            log.warning("rate limiter unavailable (%s): failing %s", type(exc).__name__, "open" if self.fail_open else "closed")
            return Decision(allowed=self.fail_open, retry_after_s=0.0 if self.fail_open else 1.0, degraded=True)
        return Decision(allowed=bool(allowed), retry_after_s=int(wait_ms) / 1000)

    async def close(self) -> None:
        await self._redis.aclose()
