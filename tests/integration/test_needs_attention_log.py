"""The runbook's promise: the `saga.needs_attention` log line of a parked order carries the failure's traceback."""

from __future__ import annotations

import io
import json
import traceback
import uuid
from typing import Any

import dramatiq
from sqlalchemy import text

from models.db import engine_for
from models.status import OrderStatus
from pipeline.errors import PermanentError, RefundFailed
from pipeline.logs import configure_logging
from tests.edge_helpers import order_row
from tests.factories import make_order, make_product
from workers.saga.runner import give_up, needs_attention


def refunding_order(db_url: str) -> uuid.UUID:
    """An order whose compensation is at `refund_payment`."""
    order_id = make_order(db_url, [(make_product(db_url), 1)])
    with engine_for(db_url).begin() as connection:
        connection.execute(
            text("UPDATE orders SET status = :status, current_step = 'refund_payment' WHERE id = :id"),
            {"id": order_id, "status": OrderStatus.COMPENSATING.value},
        )
    return order_id


def parked_line(stream: io.StringIO) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [json.loads(line) for line in stream.getvalue().splitlines()]
    [parked] = [entry for entry in entries if entry["event"] == "saga.needs_attention"]
    return parked


def refund_crashes() -> None:
    raise KeyError("charge_id")


def test_a_compensation_out_of_retries_logs_the_traceback_of_its_last_attempt(
    db_url: str, log_stream: io.StringIO, saga_broker: dramatiq.Broker
) -> None:
    from workers.saga.compensation_actors import (
        saga_exhausted,  # declared on the broker the worker's entry point installs
    )

    configure_logging("INFO", "json", log_stream)
    order_id = refunding_order(db_url)
    try:
        refund_crashes()
    except KeyError:
        last_attempt = traceback.format_exc(limit=30)  # what Dramatiq's Retries keeps in the message's options
    message = {"actor_name": "refund_payment", "args": [str(order_id)], "options": {"traceback": last_attempt}}

    saga_exhausted(message, {"retries": 20, "max_retries": 20})

    assert order_row(db_url, order_id)["status"] == "needs_attention"
    line = parked_line(log_stream)
    assert (line["logger"], line["level"], line["order_id"], line["step"]) == (
        "orderflow.saga",
        "error",
        str(order_id),
        "refund_payment",
    )
    assert line["error"] == "refund_payment kept failing: KeyError: 'charge_id'"
    assert 'in refund_crashes\n    raise KeyError("charge_id")' in line["exception"]


def test_a_compensation_failing_for_good_logs_the_traceback_of_the_error_being_handled(
    db_url: str, log_stream: io.StringIO
) -> None:
    configure_logging("INFO", "json", log_stream)
    order_id = refunding_order(db_url)

    try:
        raise RefundFailed("the bank refused the refund")
    except PermanentError as error:  # as the runner hands a permanent failure on, inside its except clause
        needs_attention("refund_payment", str(order_id), error)

    line = parked_line(log_stream)
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].endswith("RefundFailed: the bank refused the refund")


def test_a_compensation_given_up_by_the_reaper_has_no_traceback_to_log(db_url: str, log_stream: io.StringIO) -> None:
    configure_logging("INFO", "json", log_stream)
    order_id = refunding_order(db_url)

    give_up("refund_payment", str(order_id), RefundFailed("re-driven too often"))

    assert "exception" not in parked_line(log_stream)
