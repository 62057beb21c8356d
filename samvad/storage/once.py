"""Things that may happen once: a carrier's answer webhook per call id (a replayed webhook mints
no new stream token), a stream token per media stream (a token seen on the wire opens nothing
more). Remembered in Redis (`SET NX` with a lifetime) so every ingress replica agrees; without
Redis, or while it is unreachable, this process remembers them itself (bounded), so one replica
still refuses a replay rather than let every one through."""

from __future__ import annotations

import hashlib
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("samvad.once")
PREFIX = "samvad:once:"
LOCAL_MAX = 100_000


class Once:
    def __init__(self, redis_url: str | None) -> None:
        self._redis = (
            aioredis.Redis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=2.0) if redis_url else None
        )
        self._local: dict[str, float] = {}  # key -> expiry (monotonic)

    async def first(self, kind: str, ident: str, ttl_s: float) -> bool:
        """True the first time (`kind`, `ident`) is seen within `ttl_s`; False for a repeat."""
        key = PREFIX + kind + ":" + hashlib.sha256(ident.encode()).hexdigest()[:32]
        local = self._first_here(key, ttl_s)
        if self._redis is None:
            return local
        try:
            return bool(await self._redis.set(key, b"1", nx=True, px=max(1, int(ttl_s * 1000))))
        except (RedisError, OSError) as exc:
            log.warning("replay cache unreachable (%s): this replica's memory decides", type(exc).__name__)
            return local

    def _first_here(self, key: str, ttl_s: float) -> bool:
        now = time.monotonic()
        if len(self._local) >= LOCAL_MAX:
            for k in [k for k, expiry in self._local.items() if expiry <= now] or list(self._local)[: LOCAL_MAX // 10]:
                self._local.pop(k, None)
        if self._local.get(key, 0.0) > now:
            return False
        self._local[key] = now + ttl_s
        return True
