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
from tests.servers import redis_url

pytestmark = pytest.mark.integration


async def test_migrations_apply_once_and_concurrently(dsn):
    conns = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, len(available())]
        assert await migrate(conns[0]) == []
        tables = {
            r["tablename"] for r in await conns[0].fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
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
        tts = ProviderCall(stage="tts", provider="espeak", model="m", usage=Usage(characters=7), latency_ms=3, cost=0.5)
        for _ in range(2):  # the end of the turn, written twice (a retry): its calls are replaced, not added
            await repo.record_turn(s.id, "t1", [tts], "partial", "hi-IN", "interrupted", [flag])
        (call,) = await repo.provider_calls(s.id)
        assert call["characters"] == 7 and float(call["cost"]) == 0.5 and call["ttfb_ms"] is None
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


async def test_writes_are_acknowledged_only_once_committed(tmp_path):
    """PostgreSQL goes away between writes: a write is refused with 503 (never queued in memory,
    where a process death would lose it), reads fail clearly, and after the restart the pool
    reconnects by itself; a repeated write does not duplicate."""
    from samvad.errors import DatabaseUnavailable
    from samvad.settings import Settings
    from samvad.storage.database import Database

    data = tmp_path / "var"
    dsn = embedded.start_postgres(data)
    db = Database(Settings(database_url=dsn, service={"db_write_retry_s": 0.3, "db_read_retry_s": 0.5}))
    try:
        s = await db.create_session("en-IN", "formal", None)
        await db.add_message(s.id, "t1", "user", "before", "en-IN", "complete")
        embedded.stop_postgres(data)
        with pytest.raises(DatabaseUnavailable):
            await db.add_message(s.id, "t2", "user", "during", "en-IN", "complete")
        with pytest.raises(DatabaseUnavailable):
            await db.messages(s.id)
        assert not db.up  # what /readyz answers from, at once
        assert embedded.start_postgres(data) == dsn
        await db.add_message(s.id, "t3", "user", "after", "en-IN", "complete")
        await db.add_message(s.id, "t3", "user", "after", "en-IN", "complete")  # a repeated write
        rows = await db.messages(s.id)
        assert [(m.turn_id, m.role, m.content) for m in rows] == [("t1", "user", "before"), ("t3", "user", "after")]
        assert db.up
    finally:
        await db.close()
        embedded.stop_postgres(data)


async def test_one_owner_per_conversation_and_fenced_writes(dsn):
    """Host A owns a conversation; B is refused while A's lease holds (and A is asked to hand it
    off); once A's lease lapses B takes it with a newer epoch and A's writes change nothing."""
    from samvad.storage.repository import FencedError

    repo = await Repository.connect(dsn, "k", max_size=2)
    try:
        s = await repo.create_session("en-IN", "formal", None)
        await repo.heartbeat("A", 30)
        await repo.heartbeat("B", 30)
        a = await repo.acquire(s.id, "A")
        assert a is not None
        assert await repo.acquire(s.id, "B") is None
        assert await repo.heartbeat("A", 30) == [s.id]  # A is asked to hand it off
        await repo.add_message(s.id, "t1", "user", "from A", "en-IN", "complete", epoch=a)
        await repo.heartbeat("A", 0)  # A's lease lapses (a dead host)
        b = await repo.acquire(s.id, "B")
        assert b is not None and b > a
        with pytest.raises(FencedError):
            await repo.add_message(s.id, "t2", "user", "late write from A", "en-IN", "complete", epoch=a)
        with pytest.raises(FencedError):
            await repo.record_turn(s.id, "t1", [], "late answer from A", "en-IN", "complete", epoch=a)
        await repo.record_turn(s.id, "t1", [], "answer from B", "en-IN", "complete", epoch=b)
        assert [m.content for m in await repo.messages(s.id)] == ["from A", "answer from B"]
        await repo.release([s.id], "B")  # passivated: anyone takes it at once
        assert await repo.acquire(s.id, "A") == b + 1
        with pytest.raises(NotFoundError):
            await repo.acquire("00000000-0000-0000-0000-000000000000", "A")
    finally:
        await repo.close()


async def test_idempotency_claims(dsn):
    from samvad.storage.repository import IdempotencyMismatch

    repo = await Repository.connect(dsn, "k", max_size=2)
    try:
        args = {"language": "en-IN", "mode": "formal", "voice": None, "output_script": None}
        first = await repo.claim(7, "key-1", "turn", "h1", new_session=args, new_turn=True)
        assert first.fresh and first.session_id and first.turn_id and first.response is None
        again = await repo.claim(7, "key-1", "turn", "h1", new_session=args, new_turn=True)
        assert (again.fresh, again.session_id, again.turn_id) == (False, first.session_id, first.turn_id)
        assert (await repo.get_session(first.session_id, 7)).id == first.session_id
        with pytest.raises(NotFoundError):  # another key's session is not found
            await repo.get_session(first.session_id, 8)
        with pytest.raises(IdempotencyMismatch):
            await repo.claim(7, "key-1", "turn", "another body", new_turn=True)
        other_key = await repo.claim(8, "key-1", "turn", "h1", session_id=first.session_id, new_turn=True)
        assert other_key.fresh and other_key.turn_id != first.turn_id  # keys are per API key
        await repo.add_message(first.session_id, first.turn_id, "user", "q", "en-IN", "complete")
        await repo.record_turn(first.session_id, first.turn_id, [], "a", "en-IN", "complete", response='{"x": 1}')
        assert await repo.idempotent_response(first.session_id, first.turn_id) == '{"x": 1}'
        assert (await repo.claim(7, "key-1", "turn", "h1")).response == '{"x": 1}'
        assert await repo.expire_idempotency_keys(3600) == 0  # young records stay
        assert await repo.expire_idempotency_keys(0) == 2
        assert (await repo.claim(7, "key-1", "turn", "h1", new_turn=True)).fresh  # the key may be used anew
    finally:
        await repo.close()


async def test_concurrent_opens_of_one_key_never_overshoot_its_cap(dsn):
    """Twenty opens at once against a cap of five: exactly five sessions, fifteen refusals that
    say how many are open; another key is not affected; a closed session frees its place."""
    from samvad.storage.repository import TooManySessions

    repo = await Repository.connect(dsn, "secret", max_size=10)
    try:
        key = (await repo.create_key("capped-concurrently"))[0].id
        other = (await repo.create_key("uncapped-neighbour"))[0].id
        results = await asyncio.gather(
            *(repo.create_session("hi-IN", "formal", None, key, max_open=5) for _ in range(20)), return_exceptions=True
        )
        opened = [r for r in results if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, TooManySessions)]
        assert len(opened) == 5 and len(refused) == 15, results
        assert "5 open sessions (the limit is 5)" in refused[0].message
        assert (await repo.create_session("hi-IN", "formal", None, other, max_open=5)).id  # its own count
        with pytest.raises(TooManySessions):
            await repo.create_session("hi-IN", "formal", None, key, max_open=5)
        assert await repo.close_session(opened[0].id, key)
        assert (await repo.create_session("hi-IN", "formal", None, key, max_open=5)).id
    finally:
        await repo.close()
