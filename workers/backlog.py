"""How much work waits in each saga queue, read straight from Dramatiq's Redis keys.

Dramatiq's Redis broker (`dramatiq/brokers/redis/dispatch.lua`) keeps, per queue:
`<ns>:<queue>` a list of message ids (ready, the head is fetched first), `<ns>:<queue>.msgs` their
bodies; `<ns>:<queue>.DQ` and `<ns>:<queue>.DQ.msgs` the delayed ones (retries in backoff, `delay=`);
`<ns>:<queue>.XQ` a sorted set of dead-lettered ids; and `<ns>:__acks__.<worker_id>.<queue>` one set
per worker of the ids it fetched and has not acked yet, with worker ids in the `<ns>:__heartbeats__`
sorted set. One Lua call reads all of it, so the numbers are one consistent snapshot in one round trip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dramatiq
import redis
from dramatiq.errors import DecodeError

from workers.operator.dead_letters import QUEUES

# Delayed counts the `.DQ.msgs` hash, not the `.DQ` list: a running worker moves delayed messages
# it will hold until their eta into its `.DQ` ack set, and they are still delayed, not in flight.
# In flight sums the plain-queue ack sets of every worker that ever sent a heartbeat; Dramatiq only
# forgets a worker once its ack sets are gone, so none is missed (a dead worker's count until its
# messages are handed back by Dramatiq's maintenance, after the heartbeat timeout).
SNAPSHOT = """
local ns = ARGV[1]
local workers = redis.call("zrange", ns .. ":__heartbeats__", 0, -1)
local found = {}
for i = 2, #ARGV do
    local queue = ns .. ":" .. ARGV[i]
    local in_flight = 0
    for _, worker in ipairs(workers) do
        in_flight = in_flight + redis.call("scard", ns .. ":__acks__." .. worker .. "." .. ARGV[i])
    end
    local head = redis.call("lindex", queue, 0)
    local body = false
    if head then
        body = redis.call("hget", queue .. ".msgs", head)
    end
    found[#found + 1] = {
        redis.call("llen", queue), redis.call("hlen", queue .. ".DQ.msgs"), in_flight,
        redis.call("zcard", queue .. ".XQ"), body,
    }
end
return found
"""


@dataclass(frozen=True)
class QueueBacklog:
    """One queue's messages by state, and how long its oldest ready message has waited."""

    queue: str
    ready: int
    delayed: int
    in_flight: int
    dead: int
    oldest_age_s: float | None

    @property
    def total(self) -> int:
        """Messages still to be processed (dead letters are not: they wait for an operator)."""
        return self.ready + self.delayed + self.in_flight


def backlog(client: redis.Redis, namespace: str = "orderflow") -> dict[str, QueueBacklog]:
    """Every saga queue's backlog, by queue name, from one atomic read of the broker's keys."""
    replies = client.register_script(SNAPSHOT)(args=[namespace, *QUEUES])
    now_ms = time.time() * 1000
    return {
        queue: QueueBacklog(queue, int(ready), int(delayed), int(in_flight), int(dead), _age_s(head, now_ms))
        for queue, (ready, delayed, in_flight, dead, head) in zip(QUEUES, replies, strict=True)
    }


def _age_s(body: bytes | None, now_ms: float) -> float | None:
    """How long a ready message has been waiting: since it was sent, or since its eta if it was delayed."""
    if body is None:
        return None
    try:
        message = dramatiq.Message.decode(body)
    except DecodeError:  # not ours to judge here; the worker that fetches it will dead-letter it
        return None
    ready_since_ms = max(int(message.message_timestamp), int(message.options.get("eta", 0)))
    return max(0.0, (now_ms - ready_since_ms) / 1000)
