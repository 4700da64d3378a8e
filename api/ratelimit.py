"""A token bucket per client in Redis, refilled and spent atomically by one Lua script.

The bucket holds up to `burst` tokens and refills at `rate` per second on the Redis server's clock, so
every API process shares one budget per client. If Redis cannot be reached the limiter lets requests
through (and logs it): intake keeps working, and the broker outage shows up on /readyz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis
import redis.asyncio

from pipeline.logs import get_logger

log = get_logger(__name__)

KEY_PREFIX = "orderflow:ratelimit:"

# KEYS[1] bucket; ARGV rate (tokens/s), burst. Returns {allowed 0|1, seconds until one token as a string}.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


@dataclass(frozen=True)
class Decision:
    """Whether a request may go ahead, and if not, after how many whole seconds to retry."""

    allowed: bool
    retry_after_s: int = 0


class RateLimiter:
    """Per-client token buckets sharing one Redis.

    Async, so the check costs one Redis round trip on the event loop rather than a hop to a worker thread.
    The client belongs to one event loop: build the limiter inside the app's lifespan.
    """

    def __init__(self, client: redis.asyncio.Redis, rate_per_s: float, burst: int) -> None:
        check_rate_limit(rate_per_s, burst)
        self.rate, self.burst = rate_per_s, burst
        self.script = client.register_script(TOKEN_BUCKET)

    async def take(self, client_id: str) -> Decision:
        """Spend one token of client_id's bucket if there is one."""
        try:
            allowed, wait = await self.script(keys=[KEY_PREFIX + client_id], args=[self.rate, self.burst])
        except redis.RedisError as error:
            log.warning("rate_limit_unavailable", client_id=client_id, error=str(error))
            return Decision(True)
        if int(allowed):
            return Decision(True)
        return Decision(False, max(1, math.ceil(float(wait))))


def check_rate_limit(rate_per_s: float, burst: int) -> None:
    if rate_per_s <= 0 or burst < 1:
        raise ValueError("the rate limit needs rate_limit_per_s > 0 and rate_limit_burst >= 1")
