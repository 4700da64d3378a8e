"""Every CHECK constraint turns an impossible row away, and every CHECK constraint is tested here."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import CheckConstraint, text
from sqlalchemy.exc import IntegrityError

from models.db import engine_for
from models.tables import Base


def insert(db_url: str, table: str, **values: Any) -> None:
    columns = ", ".join(values)
    params = ", ".join(f":{name}" for name in values)
    with engine_for(db_url).begin() as connection:
        connection.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({params})"), values)


def a_product(db_url: str, **overrides: Any) -> uuid.UUID:
    row: dict[str, Any] = {"id": uuid.uuid4(), "sku": uuid.uuid4().hex, "name": "mug", "price_cents": 1200}
    row |= {"total": 10, "available": 10, "reserved": 0, "shipped": 0, "currency": "USD"} | overrides
    insert(db_url, "products", **row)
    return uuid.UUID(str(row["id"]))


def an_order(db_url: str, **overrides: Any) -> uuid.UUID:
    row: dict[str, Any] = {"id": uuid.uuid4(), "client_id": "shop-1", "user_id": "u1", "currency": "USD"}
    row |= {"total_cents": 1200, "payment_method_id": "pm_card_visa", "shipping_address": json.dumps({"city": "Oslo"})}
    row |= overrides
    insert(db_url, "orders", **row)
    return uuid.UUID(str(row["id"]))


def an_order_line(db_url: str, **overrides: Any) -> None:
    row = {"order_id": an_order(db_url), "product_id": a_product(db_url), "line_no": 1, "quantity": 1}
    insert(db_url, "order_lines", **(row | {"unit_price_cents": 1200} | overrides))


def a_reservation(db_url: str, **overrides: Any) -> None:
    row = {"order_id": an_order(db_url), "product_id": a_product(db_url), "quantity": 1, "status": "held"}
    insert(db_url, "reservations", **(row | overrides))


def a_payment(db_url: str, **overrides: Any) -> None:
    row = {"order_id": an_order(db_url), "idempotency_key": uuid.uuid4().hex, "amount_cents": 1200}
    insert(db_url, "payments", **(row | {"currency": "USD", "status": "started"} | overrides))


def a_refund(db_url: str, **overrides: Any) -> None:
    order = an_order(db_url)
    payment = {
        "order_id": order,
        "idempotency_key": uuid.uuid4().hex,
        "amount_cents": 1200,
        "currency": "USD",
        "status": "succeeded",
        "intent_id": f"pi_{uuid.uuid4().hex}",
    }
    insert(db_url, "payments", **payment)
    with engine_for(db_url).connect() as connection:
        payment_id = connection.execute(text("SELECT id FROM payments WHERE order_id = :o"), {"o": order}).scalar_one()
    row = {"payment_id": payment_id, "provider_refund_id": f"re_{uuid.uuid4().hex}", "amount_cents": 100}
    insert(db_url, "refunds", **(row | {"status": "succeeded", "origin": "saga"} | overrides))


def a_step(db_url: str, **overrides: Any) -> None:
    row = {"order_id": an_order(db_url), "step": "reserve_stock", "kind": "action", "outcome": "started"}
    insert(db_url, "saga_steps", **(row | overrides))


def a_notification(db_url: str, **overrides: Any) -> None:
    insert(db_url, "notifications", **({"order_id": an_order(db_url), "kind": "confirmation"} | overrides))


def an_idempotency_key(db_url: str, **overrides: Any) -> None:
    row = {"client_id": "c", "key": uuid.uuid4().hex, "request_hash": "h", "response_code": 201}
    insert(db_url, "idempotency_keys", **(row | {"response_body": "{}"} | overrides))


def a_local_delivery(db_url: str, **overrides: Any) -> None:
    row = {"provider": "notifier", "idempotency_key": uuid.uuid4().hex, "order_id": uuid.uuid4(), "payload": "{}"}
    insert(db_url, "local_deliveries", **(row | overrides))


def an_order_event(db_url: str, **overrides: Any) -> None:
    row = {"order_id": an_order(db_url), "client_id": "shop-1", "sequence": 1, "type": "order.accepted"}
    insert(db_url, "order_events", **(row | {"payload": "{}"} | overrides))


def an_endpoint(db_url: str, **overrides: Any) -> uuid.UUID:
    endpoint_id = uuid.uuid4()
    row = {"id": endpoint_id, "client_id": "shop-1", "url": "https://shop.example/hooks", "secret": "whsec_x"}
    insert(db_url, "webhook_endpoints", **(row | overrides))
    return endpoint_id


def a_delivery(db_url: str, **overrides: Any) -> None:
    order_id, event_id = an_order(db_url), uuid.uuid4()
    event = {"id": event_id, "order_id": order_id, "client_id": "shop-1", "sequence": 1, "type": "order.accepted"}
    insert(db_url, "order_events", **(event | {"payload": "{}"}))
    row = {"endpoint_id": an_endpoint(db_url), "event_id": event_id, "order_id": order_id, "sequence": 1}
    insert(db_url, "webhook_deliveries", **(row | {"give_up_at": LATER} | overrides))


def a_fanout_position(db_url: str, **overrides: Any) -> None:
    insert(db_url, "webhook_fanout", **({"id": 1, "transaction_id": 0, "event_id": uuid.uuid4()} | overrides))


LATER = "2020-01-01T00:00:00Z"
BAD_ROWS: dict[str, tuple[Callable[..., object], dict[str, Any]]] = {
    "ck_products_price_not_negative": (a_product, {"price_cents": -1}),
    "ck_products_currency_iso": (a_product, {"currency": "usd"}),
    "ck_products_available_not_negative": (a_product, {"available": -1, "total": 9}),
    "ck_products_reserved_not_negative": (a_product, {"reserved": -1, "available": 11}),
    "ck_products_shipped_not_negative": (a_product, {"shipped": -1, "available": 11}),
    "ck_products_stock_conserved": (a_product, {"available": 9}),
    "ck_orders_status_known": (an_order, {"status": "lost"}),
    "ck_orders_currency_iso": (an_order, {"currency": "eur"}),
    "ck_orders_total_not_negative": (an_order, {"total_cents": -5}),
    "ck_orders_deliveries_not_negative": (an_order, {"deliveries": -1}),
    "ck_orders_cancel_has_reason": (an_order, {"status": "cancelled"}),
    "ck_order_lines_quantity_positive": (an_order_line, {"quantity": 0}),
    "ck_order_lines_price_not_negative": (an_order_line, {"unit_price_cents": -1}),
    "ck_order_lines_line_no_positive": (an_order_line, {"line_no": 0}),
    "ck_reservations_quantity_positive": (a_reservation, {"quantity": 0}),
    "ck_reservations_status_known": (a_reservation, {"status": "stolen"}),
    "ck_payments_status_known": (a_payment, {"status": "maybe"}),
    "ck_payments_amount_positive": (a_payment, {"amount_cents": 0}),
    "ck_payments_refund_within_charge": (a_payment, {"status": "succeeded", "intent_id": "pi", "refunded_cents": 1201}),
    "ck_payments_success_has_intent": (a_payment, {"status": "succeeded"}),
    "ck_payments_refund_only_of_success": (a_payment, {"status": "declined", "refunded_cents": 1}),
    "ck_payments_currency_iso": (a_payment, {"currency": "12$"}),
    "ck_refunds_status_known": (a_refund, {"status": "maybe"}),
    "ck_refunds_origin_known": (a_refund, {"origin": "martians"}),
    "ck_refunds_amount_positive": (a_refund, {"amount_cents": 0}),
    "ck_saga_steps_kind_known": (a_step, {"kind": "magic"}),
    "ck_saga_steps_outcome_known": (a_step, {"outcome": "maybe"}),
    "ck_saga_steps_attempt_positive": (a_step, {"attempt": 0}),
    "ck_saga_steps_finished_after_start": (a_step, {"finished_at": LATER}),
    "ck_saga_steps_duration_not_negative": (a_step, {"duration_ms": -1}),
    "ck_notifications_kind_known": (a_notification, {"kind": "spam"}),
    "ck_idempotency_keys_response_code_http": (an_idempotency_key, {"response_code": 42}),
    "ck_local_deliveries_provider_known": (a_local_delivery, {"provider": "pigeon"}),
    "ck_order_events_sequence_positive": (an_order_event, {"sequence": 0}),
    "ck_order_events_type_known": (an_order_event, {"type": "payment.captured"}),
    "ck_webhook_endpoints_disabled_has_reason": (an_endpoint, {"enabled": False}),
    "ck_webhook_deliveries_status_known": (a_delivery, {"status": "lost"}),
    "ck_webhook_deliveries_attempts_not_negative": (a_delivery, {"attempts": -1}),
    "ck_webhook_fanout_single_row": (a_fanout_position, {"id": 2}),
}


def test_every_check_constraint_of_the_schema_has_a_bad_row_here() -> None:
    declared = {
        constraint.name
        for table in Base.metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint)
    }

    assert declared == set(BAD_ROWS)


@pytest.mark.parametrize("constraint", sorted(BAD_ROWS))
def test_a_row_breaking_the_constraint_is_rejected_by_postgres(db_url: str, constraint: str) -> None:
    make_row, bad_values = BAD_ROWS[constraint]

    with pytest.raises(IntegrityError, match=constraint):
        make_row(db_url, **bad_values)


@pytest.mark.parametrize(
    "make_row",
    [a_product, an_order, an_order_line, a_reservation, a_payment, a_step, an_order_event, an_endpoint, a_delivery],
)
def test_the_valid_rows_the_cases_start_from_are_accepted(db_url: str, make_row: Any) -> None:
    make_row(db_url)
