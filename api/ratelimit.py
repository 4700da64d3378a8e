"""Admission in one Redis round trip: a token bucket per source address for failed logins, one per client.

A bucket holds up to `burst` tokens and refills at `rate` per second on the Redis server's clock, so every API
process shares one budget per client and per address. One Lua script reads the caller's address bucket and,
if the address may still try, spends from the client's bucket (a verified token) or from the address's (a
token that failed): a request pays one round trip whatever its outcome. An address out of failure tokens is
refused before anything else, valid token or not, so the answer never tells a guesser which key works.

If Redis cannot be reached the request is let through (and logged): intake keeps working, and the broker
outage shows up in /readyz's body (the API stays ready: readiness needs only Postgres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import redis
import redis.asyncio

from pipeline.logs import get_logger

log = get_logger(__name__)

KEY_PREFIX = "orderflow:ratelimit:"
AUTH_FAILURE_PREFIX = "orderflow:authfail:"

# KEYS[1] the address's failure bucket, KEYS[2] the client's bucket (absent: the token failed to verify).
# ARGV failure rate (tokens/s), failure burst, client rate, client burst.
# Returns {verdict, seconds until a token (string), 1 if this failure took the address's last whole token}.
# Both keys live on one Redis (orderflow does not run Redis Cluster, where they would need one hash slot).
ADMISSION = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local function level(key, rate, burst)
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  return math.min(burst, tokens + math.max(0, now - at) * rate)
end
local function spend(key, tokens, rate, burst)
  redis.call('HSET', key, 'tokens', tostring(tokens - 1), 'at', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
local failure_rate, failure_burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local address = level(KEYS[1], failure_rate, failure_burst)
if address < 1 then
  return {'address_throttled', tostring((1 - address) / failure_rate), 0}
end
if #KEYS == 1 then
  spend(KEYS[1], address, failure_rate, failure_burst)
  return {'failure_counted', '0', address < 2 and 1 or 0}
end
local rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens = level(KEYS[2], rate, burst)
if tokens < 1 then
  return {'client_limited', tostring((1 - tokens) / rate), 0}
end
spend(KEYS[2], tokens, rate, burst)
return {'admitted', '0', 0}
"""


class Verdict(Enum):
    ADMITTED = "admitted"  # a verified client within its rate
    FAILURE_COUNTED = "failure_counted"  # a failed token, spent from its address's budget: answer 401
    ADDRESS_THROTTLED = "address_throttled"  # too many failures from this address: 429, token unread
    CLIENT_LIMITED = "client_limited"  # a verified client over its rate: 429
    UNAVAILABLE = "unavailable"  # Redis did not answer: let through


@dataclass(frozen=True)
class Decision:
    """What the limits say about one request, and if it is refused, after how many whole seconds to retry."""

    verdict: Verdict
    retry_after_s: int = 0
    emptied: bool = False  # this failure took its address's last whole token


@dataclass(frozen=True)
class Rate:
    """A bucket's refill rate (tokens per second) and size."""

    per_s: float
    burst: int

    def __post_init__(self) -> None:
        if self.per_s <= 0 or self.burst < 1:
            raise ValueError(f"a rate limit needs a rate > 0 and a burst >= 1, not {self.per_s} and {self.burst}")


class Admission:
    """The per-address failure budget and the per-client request budget, on one Redis.

    Async, so the check costs one round trip on the event loop rather than a hop to a worker thread. Its Redis
    client belongs to one event loop: build it inside the app's lifespan.
    """

    def __init__(self, client: redis.asyncio.Redis, requests: Rate, failures: Rate) -> None:
        self.requests, self.failures = requests, failures
        self.script = client.register_script(ADMISSION)

    async def admit(self, address: str, client_id: str | None) -> Decision:
        """Spend from client_id's bucket (a verified token) or, with None, from address's failure bucket."""
        keys = [AUTH_FAILURE_PREFIX + address] + ([KEY_PREFIX + client_id] if client_id is not None else [])
        args = [self.failures.per_s, self.failures.burst, self.requests.per_s, self.requests.burst]
        try:
            verdict, wait, emptied = await self.script(keys=keys, args=args)
        except redis.RedisError as error:
            log.warning("rate_limit_unavailable", address=address, client_id=client_id, error=str(error))
            return Decision(Verdict.UNAVAILABLE)
        retry_after = max(1, math.ceil(float(wait))) if float(wait) > 0 else 0
        return Decision(Verdict(verdict.decode()), retry_after, bool(int(emptied)))
