"""How every ingress replica learns that a key was revoked (or a session closed) at once: a set
of revoked key ids in Redis, read when the database cannot vouch for a key, and a channel every
replica listens to ("key <id>": revoked, "session <key id> <id>": closed)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

CHANNEL = "samvad:gate"
REVOKED_SET = "samvad:revoked-keys"


async def revoked(client: aioredis.Redis | None, key_id: int, *, when_unsure: bool) -> bool:
    """Whether the revoked set names the key; `when_unsure` when Redis cannot be asked."""
    if client is None:
        return False
    try:
        return bool(await client.sismember(REVOKED_SET, str(key_id)))
    except (RedisError, OSError):
        return when_unsure


async def publish_revocation(redis_url: str, key_id: int) -> None:
    """Tell every replica that `key_id` is revoked (`samvad keys revoke`, after the database)."""
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2.0, socket_timeout=2.0)
    try:
        await client.sadd(REVOKED_SET, str(key_id))
        await client.publish(CHANNEL, f"key {key_id}")
    finally:
        await client.aclose()
