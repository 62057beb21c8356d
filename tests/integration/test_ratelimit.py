"""Token buckets in Redis: exact across limiter instances (one per ingress replica), refill,
and the failure policy when Redis is down."""

import asyncio

import pytest
import redis

from samvad.storage.ratelimit import RateLimiter
from tests.servers import redis_url

pytestmark = pytest.mark.integration


def test_exact_limit_across_two_replicas_under_a_concurrent_burst(tmp_path):
    with redis_url(tmp_path) as url:
        redis.Redis.from_url(url).flushdb()

        async def burst():
            a, b = RateLimiter(url), RateLimiter(url)  # two replicas, two connection pools
            try:
                calls = [(a if i % 2 else b).take("key:7", per_minute=25) for i in range(80)]
                return [d.allowed for d in await asyncio.gather(*calls)]
            finally:
                await a.close()
                await b.close()

        results = asyncio.run(burst())
        assert sum(results) == 25


def test_refill_and_retry_after(tmp_path):
    with redis_url(tmp_path) as url:
        redis.Redis.from_url(url).flushdb()

        async def scenario():
            rl = RateLimiter(url)
            try:
                first = [await rl.take("ip:1", per_minute=120, burst=2) for _ in range(3)]
                assert [d.allowed for d in first] == [True, True, False]
                assert 0 < first[2].retry_after_s <= 0.5  # 2 tokens/s: one is back within 0.5 s
                await asyncio.sleep(first[2].retry_after_s + 0.05)
                assert (await rl.take("ip:1", per_minute=120, burst=2)).allowed
            finally:
                await rl.close()

        asyncio.run(scenario())


def test_redis_down_fails_open_or_closed_as_configured():
    async def scenario():
        opened, closed = RateLimiter("redis://127.0.0.1:1/0"), RateLimiter("redis://127.0.0.1:1/0", fail_open=False)
        a, b = await opened.take("k", 10), await closed.take("k", 10)
        await opened.close()
        await closed.close()
        return a, b

    a, b = asyncio.run(scenario())
    assert a.allowed and a.degraded
    assert not b.allowed and b.degraded and b.retry_after_s > 0


def test_a_slow_redis_is_not_a_down_redis(tmp_path):
    """Redis up but answering late (CPU saturated; here: all clients paused for 1.2 s): the
    bucket still decides. The limit must not open exactly when the box is busiest."""
    with redis_url(tmp_path) as url:
        admin = redis.Redis.from_url(url)
        admin.flushdb()

        async def scenario():
            rl = RateLimiter(url, fail_open=True)
            try:
                assert (await rl.take("key:slow", per_minute=1)).allowed  # the one token
                admin.execute_command("CLIENT", "PAUSE", 1200)
                late = await rl.take("key:slow", per_minute=1)
                return late
            finally:
                await rl.close()

        late = asyncio.run(scenario())
        assert not late.degraded and not late.allowed  # decided by the bucket, not the failure policy
