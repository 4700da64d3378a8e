"""Events: every state change becomes a Stripe Event, recorded and forwarded in the background to the webhook URL.

Delivery runs in its own thread, so API answers never wait for it. Each first try may be held back by up to
`webhook_delay_s` (so events can arrive out of order); a non-2xx answer or a connection error is retried after
`webhook_retry_base_s`, doubling each time, until `webhook_max_attempts` tries have been made.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .faults import Faults
from .objects import Json, new_id, now
from .webhooks import TIMEOUT_S, WebhookTarget, post

API_VERSION = "2024-06-20"


@dataclass
class Delivery:
    """One emitted event and how its delivery went."""

    body: bytes
    target: WebhookTarget | None
    generation: int
    attempts: int = 0
    delivered: bool = False
    given_up: bool = False
    last_status: int | None = None
    last_error: str | None = None

    def to_dict(self) -> Json:
        """The event with its delivery state, for GET /_control/events."""
        state = {"url": self.target.url if self.target else None, "attempts": self.attempts}
        state |= {"delivered": self.delivered, "given_up": self.given_up}
        state |= {"last_status": self.last_status, "last_error": self.last_error}
        event: Json = json.loads(self.body)
        return event | {"delivery": state}


class EventBus:
    """Records every event and forwards it, signed, to the configured target from a background thread."""

    def __init__(self, settings: Callable[[], Faults], target: WebhookTarget | None = None) -> None:
        self._settings = settings
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._generation = 0
        self.reset(target)

    @property
    def target(self) -> WebhookTarget | None:
        """Where events go now (None: recorded only)."""
        return self._target

    def reset(self, target: WebhookTarget | None) -> None:
        """Forget every event and pending delivery, and forward new events to `target`."""
        with self._cond:
            self.deliveries: list[Delivery] = []
            self.configure(target)

    def configure(self, target: WebhookTarget | None) -> None:
        """Forward new events to `target` (None turns forwarding off); pending deliveries are dropped."""
        with self._cond:
            self._target, self._generation = target, self._generation + 1
            self._queue.clear()
            self._cond.notify_all()

    def publish(self, kind: str, obj: Json, delay_s: float = 0.0) -> None:
        """Emit an event about `obj` as it is now, and schedule its first delivery `delay_s` from now."""
        envelope = {"id": new_id("evt"), "object": "event", "type": kind, "created": now(), "livemode": False}
        envelope |= {"api_version": API_VERSION, "pending_webhooks": int(self._target is not None)}
        envelope |= {"request": {"id": None, "idempotency_key": None}, "data": {"object": obj}}
        body = json.dumps(envelope).encode()
        with self._cond:
            delivery = Delivery(body, self._target, self._generation)
            self.deliveries.append(delivery)
            if delivery.target is not None:
                self._push(delivery, delay_s)

    def events(self) -> list[Json]:
        """Every event emitted since the last reset, oldest first, with its delivery state."""
        with self._cond:
            return [delivery.to_dict() for delivery in self.deliveries]

    def start(self) -> None:
        """Start the delivery thread."""
        with self._cond:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="fake-stripe-webhooks", daemon=True)
            self._thread.start()

    def stop(self, wait_s: float = TIMEOUT_S + 1) -> None:
        """Stop the delivery thread (an attempt under way may finish first)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(wait_s)

    def _push(self, delivery: Delivery, delay_s: float) -> None:
        heapq.heappush(self._queue, (time.monotonic() + delay_s, next(self._order), delivery))
        self._cond.notify_all()

    def _next_due(self) -> Delivery | None:
        """Wait for the next delivery that is due; None when stopping."""
        with self._cond:
            while not self._stopping:
                wait = self._queue[0][0] - time.monotonic() if self._queue else None
                if wait is not None and wait <= 0:
                    return heapq.heappop(self._queue)[2]
                self._cond.wait(wait)
            return None

    def _run(self) -> None:
        while (delivery := self._next_due()) is not None:
            assert delivery.target is not None
            status, error = post(delivery.target, delivery.body)
            self._record(delivery, status, error)

    def _record(self, delivery: Delivery, status: int | None, error: str | None) -> None:
        settings = self._settings()
        with self._cond:
            delivery.attempts += 1
            delivery.last_status, delivery.last_error = status, error
            if status is not None and 200 <= status < 300:
                delivery.delivered = True
            elif delivery.generation != self._generation:
                return  # webhooks were reset or re-pointed since: this event is no longer forwarded
            elif delivery.attempts >= settings.webhook_max_attempts:
                delivery.given_up = True
            else:
                self._push(delivery, settings.webhook_retry_base_s * 2 ** (delivery.attempts - 1))
