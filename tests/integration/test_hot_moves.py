"""An order's moves are HOT updates: none of them writes an index entry, except the move to a terminal status."""

from __future__ import annotations

import re

from sqlalchemy import text
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from models.db import dispose_engines, engine_for
from pipeline import saga
from scripts.fake_carrier import FakeCarrierServer
from scripts.fake_stripe import FakeStripeServer
from tests.edge_helpers import order_row
from tests.factories import make_order, make_product
from workers.saga.runner import run_actions

COUNTERS = text("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'orders'")


def updates(db_url: str) -> tuple[int, int]:
    """(updates, of them HOT) of the orders table since the server started, as the statistics show them."""
    with engine_for(db_url).connect() as connection:
        updated, hot = connection.execute(COUNTERS).one()
    return int(updated), int(hot)


def flushed_updates(db_url: str, at_least: int) -> tuple[int, int]:
    """The counters once the saga's connections have reported theirs: a backend reports on exit."""
    dispose_engines()
    for attempt in Retrying(
        stop=stop_after_delay(10), wait=wait_fixed(0.1), reraise=True, retry=retry_if_exception_type(AssertionError)
    ):
        with attempt:
            counted = updates(db_url)
            assert counted[0] >= at_least, counted
    return counted


def test_every_move_of_an_order_but_the_last_is_a_hot_update(
    db_url: str, stripe_server: FakeStripeServer, carrier_server: FakeCarrierServer
) -> None:
    order_id = make_order(db_url, [(make_product(db_url, stock=5), 1)])
    dispose_engines()
    before = flushed_updates(db_url, 0)

    run_actions(saga.FIRST_STEP, str(order_id))  # all five steps, each its own transaction

    assert order_row(db_url, order_id)["status"] == "shipped"
    updated, hot = (after - earlier for after, earlier in zip(flushed_updates(db_url, before[0] + 5), before))
    # One move per step; only the last changes an indexed column (terminal_status: NULL -> shipped).
    assert (updated, hot) == (len(saga.STEPS), len(saga.STEPS) - 1)


def test_no_index_on_orders_names_a_column_that_a_move_between_live_statuses_changes(db_url: str) -> None:
    with engine_for(db_url).connect() as connection:
        definitions = connection.scalars(text("SELECT indexdef FROM pg_indexes WHERE tablename = 'orders'")).all()
    moved = ("status", "current_step", "lease_expires_at", "deliveries", "updated_at", "last_error")

    # Key columns, expressions and predicates alike: any of them changing makes an update write every index.
    named = {
        column for column in moved for index in definitions if re.search(rf"\b{column}\b", index.split(" USING ")[1])
    }
    assert named == set(), definitions
