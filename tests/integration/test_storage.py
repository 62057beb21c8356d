"""Repository, migrations and cache against real servers; the embedded servers on their own."""

import asyncio

import asyncpg
import pytest
import redis

from samvad.contracts import GuardrailFlag, ProviderCall, Usage
from samvad.errors import NotFoundError
from samvad.storage import embedded
from samvad.storage.cache import Cache, cache_key
from samvad.storage.migrate import available, migrate
from samvad.storage.repository import Repository
from tests.servers import postgres, redis_url

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dsn(tmp_path_factory):
    with postgres(tmp_path_factory.mktemp("pg")) as d:
        yield d


async def test_migrations_apply_once_and_concurrently(dsn):
    conns = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, len(available())]
        assert await migrate(conns[0]) == []
        tables = {r["tablename"] for r in await conns[0].fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert {"sessions", "messages", "provider_calls", "api_keys", "schema_migrations"} <= tables
    finally:
        for c in conns:
            await c.close()


async def test_repository_roundtrip(dsn):
    repo = await Repository.connect(dsn, "secret")
    try:
        s = await repo.create_session("hi-IN", "code-mixed", None)
        assert (await repo.get_session(s.id)).language == "hi-IN"
        flag = GuardrailFlag(check="pii", action="redact")
        await repo.add_message(s.id, "t1", "user", "hello", "hi-IN", "complete")
        await repo.add_message(s.id, "t1", "assistant", "partial", "hi-IN", "interrupted", [flag])
        await repo.add_message(s.id, "t1", "assistant", "partial", "hi-IN", "interrupted", [flag])  # retried write
        msgs = await repo.messages(s.id)
        assert [(m.role, m.status) for m in msgs] == [("user", "complete"), ("assistant", "interrupted")]
        assert msgs[1].guardrail_flags == [flag]
        await repo.add_provider_calls(s.id, "t1", [ProviderCall(stage="tts", provider="espeak", model="m", usage=Usage(characters=7), latency_ms=3, cost=0.5)])
        (call,) = await repo.provider_calls(s.id)
        assert call["characters"] == 7 and float(call["cost"]) == 0.5
        with pytest.raises(NotFoundError):
            await repo.get_session("not-a-uuid")
        with pytest.raises(NotFoundError):
            await repo.get_session("00000000-0000-0000-0000-000000000000")
        row, key = await repo.create_key("ops")
        assert key.startswith("sk_samvad_") and (await repo.verify_key(key)).id == row.id
        assert await repo.verify_key(key + "x") is None
        stored = await repo._pool.fetchval("SELECT key_hash FROM api_keys WHERE id=$1", row.id)
        assert key not in stored
        assert await repo.revoke_key(row.id) and await repo.verify_key(key) is None
    finally:
        await repo.close()


async def test_cache_hits_and_degrades_to_miss(tmp_path):
    with redis_url(tmp_path) as url:
        cache = Cache(url, {"tts": 60})
        key = cache_key("tts", "espeak", "m", "", "en-IN", "hello")
        assert key != cache_key("tts", "espeak", "m", "", "hi-IN", "hello")
        await cache.set("tts", key, b"abc")
        assert await cache.get(key) == b"abc"
        assert cache.hits == 1
        await cache.close()
    broken = Cache("redis://127.0.0.1:1/0", {})
    assert await broken.get("k") is None and broken.errors == 1 and broken.misses == 1
    await broken.set("tts", "k", b"v")  # no exception


def test_embedded_servers_start_without_system_services(tmp_path):
    tmp_path = tmp_path / "fresh" / "var"  # a data folder that does not exist yet
    dsn = embedded.start_postgres(tmp_path)
    url = embedded.start_redis(tmp_path)
    try:
        async def check():
            conn = await asyncpg.connect(dsn)
            try:
                return await conn.fetchval("SELECT 41 + 1")
            finally:
                await conn.close()

        assert asyncio.run(check()) == 42
        assert "host=" in dsn  # a Unix socket in the data folder, no TCP port needed
        r = redis.Redis.from_url(url)
        r.set("x", "1")
        assert r.get("x") == b"1"
        assert embedded.start_redis(tmp_path) == url  # reused, not started twice
    finally:
        embedded.stop_redis(tmp_path)
        embedded.stop_postgres(tmp_path)
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()  # really stopped
    assert not (tmp_path / "redis" / "redis.sock").exists()


async def test_store_queues_writes_through_a_database_restart(tmp_path):
    """PostgreSQL goes away between writes: reads fail clearly, writes wait in order and land
    when it is back; nothing is lost or duplicated."""
    from samvad.settings import Settings
    from samvad.errors import DatabaseUnavailable
    from samvad.storage.service import StoreStage

    data = tmp_path / "var"
    dsn = embedded.start_postgres(data)
    store = StoreStage(Settings(database_url=dsn, service={"db_write_retry_s": 0.3, "db_read_retry_s": 0.5}))
    try:
        s = await store.call("create_session", "en-IN", "formal", None)
        await store.call("add_message", s.id, "t1", "user", "before", "en-IN", "complete")
        embedded.stop_postgres(data)
        await store.call("add_message", s.id, "t2", "user", "during", "en-IN", "complete")
        await store.call("record_turn", s.id, "t2", [], "answer during", "en-IN", "complete")
        assert store.queued == 2
        with pytest.raises(DatabaseUnavailable):
            await store.call("messages", s.id)
        assert embedded.start_postgres(data) == dsn
        assert await store.flush(30)
        # The pool's connections died with the old server: the next write reconnects by itself.
        await store.call("add_message", s.id, "t3", "user", "after", "en-IN", "complete")
        await store.call("add_message", s.id, "t2", "user", "during", "en-IN", "complete")  # a repeated write
        rows = await store.call("messages", s.id)
        assert [(m.turn_id, m.role, m.content) for m in rows] == [
            ("t1", "user", "before"), ("t2", "user", "during"), ("t2", "assistant", "answer during"), ("t3", "user", "after"),
        ]
    finally:
        await store.close()
        embedded.stop_postgres(data)
