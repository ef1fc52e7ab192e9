"""Requests per key and minute, counted in the Redis the event bus uses, so that every gateway process
behind a load balancer shares one count (the service always has a Redis: REDIS_HOST's or the embedded one).

A fixed window: one counter per key and minute of the Redis server's clock (`TIME`, so gateways whose
clocks differ still agree), incremented by one script run and expiring after two minutes. A burst may
pass twice the limit across the turn of a minute; the limit is a guard, not a quota.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from engine.errors import StorageUnavailableError

WINDOW_S = 60
KEY_PREFIX = "wf:rate:"
_COUNT = """
local now = redis.call('TIME')
local seconds = tonumber(now[1]) + tonumber(now[2]) / 1000000
local window = math.floor(seconds / ARGV[1])
local key = KEYS[1] .. ':' .. window
local count = redis.call('INCR', key)
if count == 1 then redis.call('EXPIRE', key, 2 * ARGV[1]) end
return {count, tostring((window + 1) * ARGV[1] - seconds)}
"""


class RedisRateLimiter:
    def __init__(self, host: str, port: int, password: str | None) -> None:
        self.host = host
        self.port = port
        self._password = password
        self._client: aioredis.Redis | None = None
        self._script: AsyncScript | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = aioredis.Redis(
                host=self.host,
                port=self.port,
                password=self._password,
                decode_responses=True,
                socket_connect_timeout=2,
                socket_timeout=5,
                client_name="wf-rate-limit",
            )
            self._script = self._client.register_script(_COUNT)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = self._script = None

    async def hit(self, key: str, limit_per_min: int) -> float | None:
        if self._script is None:
            raise RuntimeError("RedisRateLimiter used before start() or after close()")
        try:
            count, remaining = await self._script(keys=[KEY_PREFIX + key], args=[WINDOW_S])
        except (RedisError, OSError) as exc:
            raise StorageUnavailableError(f"Redis at {self.host}:{self.port} is unavailable: {exc}") from exc
        return None if int(count) <= limit_per_min else max(float(remaining), 0.001)
