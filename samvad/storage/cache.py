"""Redis cache for stage results. A cache failure is a miss, never an error."""

from __future__ import annotations

import hashlib
import logging
import os

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def _digest(parts: tuple[str | bytes | None, ...]) -> hashlib._Hash:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode("utf-8"))
        h.update(b"\0")
    return h


def cache_key(kind: str, *parts: str | bytes | None) -> str:
    """`samvad:<kind>:<sha256 of the parts>`; parts are provider, model, voice, language, mode, text/audio."""
    return f"samvad:{kind}:{_digest(parts).hexdigest()}"


MAX_VALUE_BYTES = 1 << 20  # a larger value is not cached: one entry cannot fill Redis


def sealed_key(kind: str, *parts: str | bytes | None) -> tuple[str, bytes]:
    """For content-addressed values that must not sit in Redis readable (transcripts: spoken
    card and phone numbers): the cache key and an AES key, both derived from the content
    itself. Only a caller holding the same audio can find the entry or read it."""
    material = _digest(parts).digest()
    name = hashlib.sha256(b"samvad-cache-id\0" + material).hexdigest()
    return f"samvad:{kind}:{name}", hashlib.sha256(b"samvad-cache-key\0" + material).digest()


def seal(key: bytes, value: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, value, None)


def unseal(key: bytes, sealed: bytes) -> bytes | None:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(key).decrypt(sealed[:12], sealed[12:], None)
    except (InvalidTag, ValueError):
        return None


class Cache:
    def __init__(self, url: str, ttl_seconds: dict[str, int], max_value_bytes: int = MAX_VALUE_BYTES) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._ttl = ttl_seconds
        self.max_value_bytes = max_value_bytes
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
        return value.encode() if isinstance(value, str) else value  # bytes: made without decode_responses

    async def set(self, kind: str, key: str, value: bytes) -> None:
        if len(value) > self.max_value_bytes:
            return
        try:
            await self._redis.set(key, value, ex=self._ttl.get(kind, 3600))
        except (RedisError, OSError) as exc:
            self.errors += 1
            log.warning("cache set failed, ignored: %s", type(exc).__name__)

    async def delete(self, key: str) -> bool:
        """Whether there was a value to delete."""
        try:
            return bool(await self._redis.delete(key))
        except (RedisError, OSError) as exc:
            self.errors += 1
            log.warning("cache delete failed, ignored: %s", type(exc).__name__)
            return False

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
