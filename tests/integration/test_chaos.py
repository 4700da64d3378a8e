"""The chaos harness at CI size: worker SIGKILLs, Redis restarted with and without its data, Postgres crashed,
providers misbehaving as documented (lagging search, processing charges, pending and failed refunds, late webhooks,
lost carrier answers, dashboard refunds and disputes); every order must still settle with a clean audit against
the providers' own records (no order lost, no double charge, no money kept, no goods shipped and refunded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.audit import violations_only
from scripts.chaos import run as chaos
from scripts.devstack.shop_endpoint import ShopEndpoint, audit_deliveries


def test_the_stack_survives_kills_and_server_restarts_with_a_clean_audit(tmp_path: Path) -> None:
    report = chaos.run(chaos.Plan(orders=300, rate=15, workers=3, threads=8, kill_every_s=3, lease_s=5), tmp_path)
    chaos.show(report)

    events = [what for _, what in report.events]
    assert sum(what.startswith("SIGKILL") for what in events) >= 3
    assert {"redis restarted, data kept", "redis restarted, data lost", "postgres crashed and restarted"} <= set(events)
    assert sum(what.startswith("dashboard") for what in events) >= 5
    assert len(report.accepted) == 300
    assert report.quiescence_s is not None, "some orders never settled"
    assert violations_only(report.violations) == {}
    assert sum(report.outcomes.values()) == 300
    assert report.outcomes["shipped", ""] > 150, "most orders ship despite the chaos"


def test_the_harness_audit_catches_a_lost_and_an_unrequested_order() -> None:
    # The database side of the audit is proven in test_saga_invariants; this is the harness's own check.
    lost = chaos.lost_orders(stored={"a", "b"}, accepted=["a", "c"])
    assert lost == {"accepted order lost": ["c"], "order not accepted": ["b"]}


def test_the_harness_audit_catches_a_missing_final_event_a_doubled_sequence_and_a_bad_signature() -> None:
    def event(event_id: str, order: str, sequence: int, webhook_id: str | None = None) -> dict[str, Any]:
        body = {"id": event_id, "sequence": sequence, "data": {"order": {"id": order}}}
        return body | {"webhook-id": webhook_id or event_id}

    shop = ShopEndpoint()
    try:
        shop.received = [event("e1", "o1", 1), event("e1", "o1", 1), event("e2", "o1", 2), event("x", "o1", 2)]
        shop.received.append(event("e3", "o2", 1, webhook_id="other"))
        shop.unverified = 1

        found = audit_deliveries(shop, finals={"o1": "e2", "o2": "e3", "o3": "e9"})
    finally:
        shop.stop()

    assert found["webhook: a terminal order's final event never reached the shop"] == ["o3"]
    assert found["webhook: one order's sequence number came with two event ids"] == ["o1#2"], "a redelivery is fine"
    assert found["webhook: webhook-id differs from the event's id"] == ["e3"]
    assert found["webhook: requests that failed signature verification"] == ["unverified"]
