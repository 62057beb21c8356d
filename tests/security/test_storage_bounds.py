"""What a tenant can make the service store is bounded: conversations past their retention go
with everything recorded of them, and a flood of cache entries never evicts the service's state
(rate limits, leases, revoked keys). Real PostgreSQL and Redis."""

from __future__ import annotations

import asyncpg
import pytest
import redis

from samvad.contracts import ProviderCall, Usage
from samvad.errors import NotFoundError
from samvad.storage import embedded
from samvad.storage.cache import Cache, cache_key
from samvad.storage.repository import Repository
from tests.integration.conftest import dsn  # noqa: F401 - the fixture, shared

pytestmark = pytest.mark.integration


async def test_conversations_past_retention_go_with_everything_recorded_of_them(dsn):
    """The retention janitor: a conversation idle past `service.retention_days` is deleted with
    its messages, provider calls and phone-call record; a recent one stays untouched."""
    repo = await Repository.connect(dsn, "k", max_size=2)
    conn = await asyncpg.connect(dsn)
    try:
        old = await repo.create_session("en-IN", "formal", None, 7)
        recent = await repo.create_session("en-IN", "formal", None, 7)
        for s in (old, recent):
            await repo.add_message(s.id, "t1", "user", "q", "en-IN", "complete")
            call = ProviderCall(stage="llm", provider="stub", model="m", usage=Usage(input_tokens=3))
            await repo.record_turn(s.id, "t1", [call], "a", "en-IN", "complete")
        await conn.execute("UPDATE sessions SET updated_at = now() - interval '200 days' WHERE id = $1", old.id)
        assert await repo.expire_sessions(180 * 86400, batch=1) == 1
        assert await repo.expire_sessions(180 * 86400) == 0
        for table in ("messages", "provider_calls"):
            rows = await conn.fetch(
                f"SELECT session_id FROM {table} WHERE session_id = ANY($1::uuid[])", [old.id, recent.id]
            )
            assert {str(r["session_id"]) for r in rows} == {recent.id}, table
        with pytest.raises(NotFoundError):
            await repo.get_session(old.id, 7)
    finally:
        await conn.close()
        await repo.close()


async def test_a_cache_flood_never_evicts_the_services_state(tmp_path):
    """The embedded servers as `samvad run` starts them: the state Redis (limits, leases, the
    revoked set) never evicts; the caches' Redis is bounded and drops old entries. A tenant
    filling the caches far past their bound leaves every state key in place."""
    from samvad.storage.ratelimit import RateLimiter

    state = embedded.start_redis(tmp_path)
    caches = embedded.start_redis(tmp_path, "cache", maxmemory_mb=4)
    try:
        assert embedded.eviction_policy(state) == "noeviction"
        assert embedded.eviction_policy(caches) == "allkeys-lru"
        limiter = RateLimiter(state)
        for i in range(200):
            await limiter.take(f"key:{i}", 600)
        r = redis.Redis.from_url(state)
        r.sadd("samvad:revoked-keys", "7")
        cache = Cache(caches, {"tts": 3600})
        for i in range(400):  # 400 x 64 KiB: six times the caches' memory
            await cache.set("tts", cache_key("tts", str(i)), b"x" * 65536)
        await cache.close()
        assert redis.Redis.from_url(caches).dbsize() < 400  # the caches evicted ...
        assert all(r.exists(f"samvad:rl:key:{i}") for i in range(200))
        assert r.sismember("samvad:revoked-keys", "7")  # ... the state did not
        await limiter.close()
    finally:
        embedded.stop_redis(tmp_path)
        embedded.stop_redis(tmp_path, "cache")
