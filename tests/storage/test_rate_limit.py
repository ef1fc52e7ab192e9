"""The RateLimiter on a real Redis server: one count per key and minute, shared by every limiter on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from storage.embedded_redis import EmbeddedRedis
from storage.rate_limit import WINDOW_S, RedisRateLimiter
from tests.storage.redis_fixtures import redis_server

__all__ = ["redis_server"]
pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def limiters(redis_server: EmbeddedRedis) -> AsyncIterator[Callable[[], RedisRateLimiter]]:
    """Limiters on the same server, as separate gateway processes would hold."""
    started: list[RedisRateLimiter] = []

    def new() -> RedisRateLimiter:
        limiter = RedisRateLimiter(redis_server.host, redis_server.port, None)
        started.append(limiter)
        return limiter

    yield new
    for limiter in started:
        await limiter.close()


async def test_two_limiters_share_the_count_of_a_key_and_refuse_past_the_limit(limiters):
    first, second = limiters(), limiters()
    await first.start()
    await second.start()
    assert await first.hit("hook-a", 3) is None
    assert await second.hit("hook-a", 3) is None
    assert await first.hit("hook-a", 3) is None
    retry_after = await second.hit("hook-a", 3)
    assert retry_after is not None and 0 < retry_after <= WINDOW_S
    assert await first.hit("hook-b", 3) is None, "another key has its own count"


async def test_a_limiter_that_is_not_started_says_so(limiters):
    with pytest.raises(RuntimeError):
        await limiters().hit("hook-a", 1)
