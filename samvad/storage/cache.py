"""Redis cache for stage results. A cache failure is a miss, never an error."""

from __future__ import annotations

import hashlib
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def cache_key(kind: str, *parts: str | bytes | None) -> str:
    """`samvad:<kind>:<sha256 of the parts>`; parts are provider, model, voice, language, mode, text/audio."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode("utf-8"))
        h.update(b"\0")
    return f"samvad:{kind}:{h.hexdigest()}"


class Cache:
    def __init__(self, url: str, ttl_seconds: dict[str, int]) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._ttl = ttl_seconds
        self.hits = 0
        self.misses = 0
        self.errors = 0

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            self.errors += 1
            log.warning("cache get failed, treating as a miss: %s", type(exc).__name__)
            value = None
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    async def set(self, kind: str, key: str, value: bytes) -> None:
        try:
            await self._redis.set(key, value, ex=self._ttl.get(kind, 3600))
        except (RedisError, OSError) as exc:
            self.errors += 1
            log.warning("cache set failed, ignored: %s", type(exc).__name__)

    async def delete(self, key: str) -> None:
        try:
            await self._redis.delete(key)
        except (RedisError, OSError) as exc:
            self.errors += 1
            log.warning("cache delete failed, ignored: %s", type(exc).__name__)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
