"""The objects of one test-mode account, their version history and settle timers; the Store's lock guards it."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

from .events import EventBus
from .faults import FaultInjector, Faults
from .objects import Json, missing
from .params import ApiFailure


def clock() -> float:
    """Seconds on the clock that settle timers and search lag are measured with."""
    return time.monotonic()


@dataclass(frozen=True)
class Timer:
    """An object (a processing PaymentIntent, a pending refund) to settle with `outcome` at `due`."""

    due: float
    outcome: str


class Account:
    """PaymentIntents (with every version, for lagging search), charges, refunds, disputes and timers."""

    def __init__(self, injector: FaultInjector, bus: EventBus) -> None:
        self.injector, self.bus = injector, bus
        self.intents: dict[str, Json] = {}
        self.history: dict[str, list[tuple[float, Json]]] = {}
        self.charges: dict[str, Json] = {}
        self.refunds: dict[str, Json] = {}
        self.disputes: dict[str, Json] = {}
        self.charge_refunds: dict[str, list[Json]] = {}  # by charge id, oldest first
        self.charge_disputes: dict[str, Json] = {}  # by charge id: a charge is disputed at most once
        self.timers: dict[str, Timer] = {}

    @property
    def faults(self) -> Faults:
        """The knobs in force."""
        return self.injector.faults

    def emit(self, kind: str, obj: Json) -> None:
        """Publish an event about `obj` as it is now; its first delivery may be late by up to webhook_delay_s."""
        self.bus.publish(kind, obj, self.injector.uniform(self.faults.webhook_delay_s))

    def save_intent(self, pi: Json, *events: str) -> None:
        """Store a new version of the PaymentIntent and emit `events` about it."""
        self.intents[pi["id"]] = pi
        self.history.setdefault(pi["id"], []).append((clock(), copy.deepcopy(pi)))
        for kind in events:
            self.emit(kind, pi)

    def add_refund(self, refund: Json) -> None:
        """Store a new refund."""
        self.refunds[refund["id"]] = refund
        self.charge_refunds.setdefault(refund["charge"], []).append(refund)

    def add_dispute(self, dispute: Json) -> None:
        """Store a new dispute."""
        self.disputes[dispute["id"]] = dispute
        self.charge_disputes[dispute["charge"]] = dispute

    def intent(self, intent_id: str, param: str = "intent", status: int = 404) -> Json:
        """The PaymentIntent with this id, or a resource_missing failure."""
        if intent_id not in self.intents:
            raise ApiFailure(missing("payment_intent", intent_id, param, status))
        return self.intents[intent_id]

    def intents_as_of(self, moment: float) -> list[Json]:
        """Each PaymentIntent as it was at `moment` (those created later are left out), oldest first."""
        seen = []
        for versions in self.history.values():
            older = [pi for saved_at, pi in versions if saved_at <= moment]
            if older:
                seen.append(older[-1])
        return seen

    def schedule(self, object_id: str, delay_s: float, outcome: str) -> None:
        """Settle the object with `outcome` once `delay_s` have passed."""
        self.timers[object_id] = Timer(clock() + delay_s, outcome)

    def due(self) -> list[tuple[str, str]]:
        """Take the timers that are due: (object id, outcome), earliest first."""
        moment = clock()
        ready = sorted((timer.due, object_id) for object_id, timer in self.timers.items() if timer.due <= moment)
        return [(object_id, self.timers.pop(object_id).outcome) for _, object_id in ready]
