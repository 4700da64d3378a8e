"""The hot path's statements as `models.db.run` sends them to psycopg, and its errors sorted like SQLAlchemy's."""

from __future__ import annotations

import psycopg
import psycopg.errors
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from models.db import _compiled
from models.status import ReservationStatus
from models.tables import ORDERS
from pipeline import ledger, order_store, stock
from pipeline.database_errors import database_bug


def test_an_update_without_values_of_its_own_writes_only_the_named_columns_and_moves_updated_at() -> None:
    sql, _ = _compiled(order_store._UPDATE, ("order_id", "lease_expires_at"))

    assert sql.startswith("UPDATE orders SET lease_expires_at=%(lease_expires_at)s")
    assert "updated_at=now()" in sql
    assert "status" not in sql and "current_step" not in sql


def test_an_insert_writes_the_named_columns_and_leaves_the_others_to_their_defaults() -> None:
    names = ("order_id", "idempotency_key", "amount_cents", "currency", "status")
    sql, _ = _compiled(ledger._OPEN, names)

    columns = sql[sql.index("(") + 1 : sql.index(")")].split(", ")
    assert columns == list(names), "id, created_at and the rest keep their server defaults"


def test_a_statement_s_own_literals_come_with_it() -> None:
    statement = order_store._move_note_and_emit(("status",), False)
    sql, defaults = _compiled(statement, ("order_id", "set_status", "event_id", "event_type", "event_payload"))

    literals = {name: value for name, value in defaults.items() if value is not None}
    assert literals and all(f"%({name})s" in sql for name in literals)
    assert sorted(literals.values(), key=str) == [0, 1, "sequence"]


def test_a_parameter_the_caller_did_not_give_is_left_for_psycopg_to_refuse_not_filled_in_as_null() -> None:
    _, defaults = _compiled(order_store._update_and_note(("status",)), ("order_id", "set_status"))

    assert "order_id" not in defaults and "note_step" not in defaults


def test_a_stock_move_sets_only_its_counters_and_the_reservation_s_status_in_one_statement() -> None:
    # Its parameters are named after no column: the UPDATE inside would set a column so named to the value.
    take, _ = _compiled(stock._TAKE_AND_HOLD, ("for_order", "for_product", "units"))
    settle, defaults = _compiled(stock._SETTLE[ReservationStatus.SHIPPED], ("for_order", "for_product", "outcome"))

    assert take.startswith("WITH taken AS \n(UPDATE products SET available=")
    assert "INSERT INTO reservations (order_id, product_id, quantity) SELECT" in take
    reservation_set = settle[settle.index("SET ") : settle.index(" WHERE")]
    assert reservation_set == "SET status=%(outcome)s::VARCHAR, updated_at=now()"
    assert "UPDATE products SET reserved=" in settle and "shipped=" in settle and "available=" not in settle
    assert defaults == {"status_1": ReservationStatus.HELD.value}


def test_the_same_statement_with_other_names_is_compiled_for_them() -> None:
    one, _ = _compiled(order_store._UPDATE, ("order_id", "status"))
    other, _ = _compiled(order_store._UPDATE, ("order_id", "last_error"))

    assert "status=" in one and "last_error=" not in one
    assert "last_error=" in other and "status=" not in other


def test_an_in_list_that_would_need_expanding_per_execution_is_refused_when_first_run() -> None:
    statement = select(ORDERS.c.id).where(ORDERS.c.status.in_(["pending", "reserved"]))

    with pytest.raises(ValueError, match="ANY"):
        _compiled(statement, ())


@pytest.mark.parametrize(
    "error",
    [psycopg.errors.UniqueViolation("dup"), psycopg.errors.UndefinedColumn("no such column")],
    ids=["integrity", "programming"],
)
def test_psycopg_s_own_statement_errors_are_bugs_as_sqlalchemy_s_wrapping_of_them_is(error: psycopg.Error) -> None:
    wrapped = IntegrityError("INSERT ...", {}, error)

    raw, through_sqlalchemy = database_bug(error), database_bug(wrapped)

    assert raw is not None and through_sqlalchemy is not None
    assert raw.message == through_sqlalchemy.message
    assert raw.details["sqlstate"] == error.sqlstate


@pytest.mark.parametrize(
    "error",
    [psycopg.errors.SerializationFailure("race"), psycopg.errors.DeadlockDetected("race"), psycopg.OperationalError()],
    ids=["serialization", "deadlock", "connection lost"],
)
def test_a_lost_race_or_connection_is_retried_raw_or_wrapped(error: psycopg.Error) -> None:
    assert database_bug(error) is None
    assert database_bug(OperationalError("SELECT ...", {}, error)) is None


def test_anything_that_is_not_a_database_error_is_left_to_the_caller() -> None:
    assert database_bug(ValueError("not ours")) is None
