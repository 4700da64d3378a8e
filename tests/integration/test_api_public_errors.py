"""GET /v1/orders/{id} shows error codes and customer-safe messages; the raw error text stays in the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.public_errors import FALLBACK_MESSAGE, public_message
from models.db import unit_of_work
from models.orders import Order
from models.saga import SagaStep
from tests.api_helpers import api_client, auth
from tests.conftest import Servers
from tests.factories import make_order, make_product

SQL_ERROR = (
    '(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "uq_reservations_order_id"\n'
    "DETAIL:  Key (order_id)=(5b1f0c1e-0000-4000-8000-000000000001) already exists.\n"
    "[SQL: INSERT INTO reservations (order_id, product_id, quantity) VALUES (%(order_id)s, %(product_id)s, 2)]"
)
STOCK_ERROR = "not enough stock: sku-limited-7f3a available=0 reserved=12 wanted=2 (UPDATE products SET ...)"
LEAKS = ("INSERT", "UPDATE", "SQL", "uq_reservations", "DETAIL", "psycopg", "UniqueViolation", "sku-limited", "%(")


@pytest.fixture
def api(servers: Servers, db_url: str, redis_client: redis.Redis) -> Iterator[TestClient]:
    with api_client(db_url, servers.redis_url, rate_limit_burst=1000) as client:
        yield client


def failed_order(
    db_url: str, last_error: str | None, cancel_reason: str | None = "OUT_OF_STOCK", status: str | None = None
) -> uuid.UUID:
    """An order (cancelled if given a reason, else parked) whose timeline holds a raw SQL error, then a failure."""
    order_id, start = make_order(db_url, [(make_product(db_url), 2)]), datetime.now(UTC)
    with unit_of_work(db_url) as session:
        for n, (outcome, code, message) in enumerate(
            [("retrying", "IntegrityError", SQL_ERROR), ("failed", "OUT_OF_STOCK", STOCK_ERROR)], start=1
        ):
            session.add(
                SagaStep(
                    order_id=order_id,
                    step="reserve_stock",
                    kind="action",
                    attempt=n,
                    outcome=outcome,
                    error_code=code,
                    error_message=message,
                    started_at=start + timedelta(seconds=n),
                    finished_at=start + timedelta(seconds=n),
                    duration_ms=5,
                )
            )
        session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(
                status=status or ("cancelled" if cancel_reason else "needs_attention"),
                cancel_reason=cancel_reason,
                last_error=last_error,
            )
        )
    return order_id


def test_the_timeline_shows_the_codes_and_safe_messages_but_no_sql_constraint_or_raw_text(
    api: TestClient, db_url: str
) -> None:
    order_id = failed_order(db_url, last_error=f"reserve_stock: TRANSIENT_ERROR: {SQL_ERROR}")

    response = api.get(f"/v1/orders/{order_id}", headers=auth("orders:read"))

    assert response.status_code == 200, response.text
    assert not [leak for leak in LEAKS if leak in response.text]
    detail = response.json()
    assert [(t["errorCode"], t["errorMessage"]) for t in detail["timeline"]] == [
        ("IntegrityError", FALLBACK_MESSAGE),
        ("OUT_OF_STOCK", "Not enough stock for an item in the order."),
    ]
    assert detail["cancelReason"] == "OUT_OF_STOCK"
    assert detail["lastError"] == public_message("TRANSIENT_ERROR") != FALLBACK_MESSAGE
    with unit_of_work(db_url) as session:  # operators still read the raw text
        assert {step.error_message for step in session.query(SagaStep).filter_by(order_id=order_id)} == {
            SQL_ERROR,
            STOCK_ERROR,
        }


@pytest.mark.parametrize(
    "last_error, cancel_reason, shown",
    [
        ("PAYMENT_DECLINED: Your card was declined (decline_code=insufficient_funds).", None, "PAYMENT_DECLINED"),
        ("refund_payment: REFUND_FAILED: charge ch_3Nx already disputed", "PAYMENT_DECLINED", "REFUND_FAILED"),
        ("Your card was declined.", "PAYMENT_DECLINED", "PAYMENT_DECLINED"),  # the saga's message, with its code
        (f"IntegrityError: {SQL_ERROR}", None, None),
        (SQL_ERROR, None, None),
        ("NOT_A_KNOWN_CODE: the ledger row 42 is locked", None, None),
        (None, "CANCELLED_BY_REQUEST", "no error"),
    ],
)
def test_last_error_is_the_safe_message_of_its_code_or_the_fallback(
    api: TestClient, db_url: str, last_error: str | None, cancel_reason: str | None, shown: str | None
) -> None:
    order_id = failed_order(db_url, last_error, cancel_reason)

    detail = api.get(f"/v1/orders/{order_id}", headers=auth("orders:read")).json()

    expected = None if shown == "no error" else public_message(shown) if shown else FALLBACK_MESSAGE
    assert detail["lastError"] == expected
    assert last_error is None or last_error not in str(detail)


def test_the_cancel_answer_shows_the_timeline_without_the_raw_text_too(api: TestClient, db_url: str) -> None:
    order_id = failed_order(db_url, last_error=None, cancel_reason=None, status="pending")

    response = api.post(f"/v1/orders/{order_id}/cancel", headers=auth("admin"))

    assert response.status_code == 202, response.text
    assert {"IntegrityError", "OUT_OF_STOCK"} <= {t["errorCode"] for t in response.json()["timeline"]}
    assert not [leak for leak in LEAKS if leak in response.text]
