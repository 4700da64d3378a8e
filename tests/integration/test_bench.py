"""The benchmark at toy size: both chains and intake run on real servers and the JSON says what happened."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dramatiq.brokers.redis import RedisBroker

from scripts.bench import growth as history
from scripts.bench.list import ListBenchConfig
from scripts.bench.list import run as run_list
from scripts.bench.list_phase import CASES
from scripts.bench.run import BenchConfig, run
from workers.broker import installed

pytestmark = pytest.mark.slow

ORDERS = 30


def tiny(tmp_path: Path, **changes: Any) -> BenchConfig:
    """30 orders, one repetition, one worker process with two threads, writing under tmp_path."""
    return BenchConfig(
        **{"orders": ORDERS, "processes": 1, "threads": 2, "repeat": 1, "warmup": 5}
        | {"json_out": tmp_path / "bench.json", "log_dir": tmp_path / "logs"}
        | changes
    )


def test_a_tiny_bench_ships_every_order_of_both_chains_and_writes_a_well_formed_document(tmp_path: Path) -> None:
    # Given a bench of 30 orders, one repetition, one worker process with two threads
    config = tiny(tmp_path, intake_seconds=1.0, intake_concurrency=2, intake_rate=20.0)

    # When it runs end to end
    returned = run(config)

    # Then the JSON on disk is the document it returned
    document = json.loads(config.json_out.read_text())
    assert document == json.loads(json.dumps(returned))
    assert {"config", "host", "baseline", "orderflow", "intake", "ratio", "targets", "notes"} <= document.keys()

    # And both chains shipped exactly the measured orders, each step committing at least once
    for phase in ("baseline", "orderflow"):
        [measured] = document[phase]["runs"]
        assert (measured["orders"], measured["shipped"], measured["not_shipped"]) == (ORDERS, ORDERS, 0), phase
        assert measured["orders_per_s"] > 0 and measured["seconds"] > 0
        # The bare chain's five steps; the saga's three transactions, its ledger's pre-charge row and the notifier's
        assert measured["commits_per_order"] >= 5, "five commits per order"
        assert measured["cpu_s_per_order"]["workers"] > 0
        assert measured["cpu_s_per_order"]["total"] >= measured["cpu_s_per_order"]["workers"]
        assert measured["worker_processes"] == 1 and measured["peak_rss_mib_per_worker"] > 0
        # The orders table as the run left it: its heap and indexes hold at least the measured orders' rows.
        assert measured["orders_heap_bytes_per_row"] > 0 and measured["orders_index_bytes_per_row"] > 0
        assert measured["orders_dead_per_live"] >= 0 and measured["orders_autovacuums"] >= 0
        assert document[phase]["summary"]["orders_per_s"]["median"] == measured["orders_per_s"]
    assert document["orderflow"]["runs"][0]["cpu_s_per_order"]["stripe"] > 0, "the saga charged through Stripe"

    # And the ratio is the paired quotient of the two chains' throughput
    [ratio] = document["ratio"]["per_repetition"]
    of, base = (document[p]["runs"][0]["orders_per_s"] for p in ("orderflow", "baseline"))
    assert ratio > 0 and ratio == pytest.approx(of / base)

    # And each chain's statements were counted from the server's log in an untimed pass: one per bare step
    assert document["baseline"]["statements"]["per_order"] == 5
    assert document["baseline"]["statements"]["transaction_control_per_order"] == 0
    counted = document["orderflow"]["statements"]
    # BEGIN and COMMIT of the stock's, the money's and the shipment's transactions
    assert counted["queries_per_order"] > 5 and counted["transaction_control_per_order"] >= 2 * 3
    assert counted["per_order"] == counted["queries_per_order"] + counted["transaction_control_per_order"]

    # And intake answered both loops without errors, and every answered POST wrote an order
    [intake] = document["intake"]["runs"]
    for loop in ("closed", "open"):
        assert intake[loop]["requests"] > 0 and intake[loop]["errors"] == 0, loop
        assert 0 < intake[loop]["p50_ms"] <= intake[loop]["p99_ms"], loop
    assert intake["open"]["requests"] == int(config.intake_rate * config.intake_seconds)
    assert intake["orders_accepted"] >= intake["closed"]["requests"] + intake["open"]["requests"]
    assert intake["commits_per_order"] >= 1

    # And every target of the issue is reported next to its measurement
    assert [t["target"].split()[0] for t in document["targets"]] == ["orderflow", "total", "intake", "peak"]
    assert all(isinstance(t["measured"], float) and isinstance(t["met"], bool) for t in document["targets"])


def test_a_tiny_list_bench_measures_every_case_on_both_tables_and_reaches_the_real_deep_pages(tmp_path: Path) -> None:
    # Given a list bench of 2,000 orders across 4 clients (500 each), page size 10, deep page 40 of 50
    config = ListBenchConfig(
        orders=2000,
        clients=4,
        page_size=10,
        samples=10,
        warmup=2,
        deep_page=40,
        walk_clients=1,
        json_out=tmp_path / "list-bench.json",
        log_dir=tmp_path / "logs",
    )

    # When it runs end to end
    returned = run_list(config)

    # Then the JSON on disk is the document it returned
    document = json.loads(config.json_out.read_text())
    assert document == json.loads(json.dumps(returned, default=str))
    assert document["load"]["full"]["orders"] == 2000 and document["load"]["empty"]["orders"] == 4 * 30

    # And every case was measured on both tables, over HTTP and in the API's own log, every answer holding the right
    # client's orders (on the small table a status filter may rightly find none), none refused
    for phase in ("empty", "full"):
        cases = document[phase]["cases"]
        assert list(cases) == list(CASES), phase
        for case, measured in cases.items():
            assert (measured["samples"], measured["errors"]) == (10, 0), (phase, case)
            assert 0 < measured["p50_ms"] <= measured["p99_ms"] <= measured["max_ms"], (phase, case)
            assert measured["server_samples"] == 10 and 0 < measured["server_p50_ms"] <= measured["server_p99_ms"]
            assert measured["rows_min"] >= (0 if (phase, case) == ("empty", "client, first page by status") else 1)
        assert document[phase]["cpu_ms_per_request"]["api"] > 0, phase

    # And the deep pages are the pages asked for: page 40 of the full table, the small table's last page (3 and 12),
    # full pages whose first order is the one SQL puts there (a mismatch counts as an error above)
    assert document["full"]["pages"] == {"client": 40, "admin": 40}
    assert document["empty"]["pages"] == {"client": 3, "admin": 12}
    for case in ("client, deep page", "admin, deep page"):
        assert document["full"]["cases"][case]["rows_min"] == 10, case

    # And walking `next` from page 1 (one client and admin, 39 pages each) arrived at the computed cursors
    assert document["full"]["walk"]["samples"] == 2 * 39 and document["full"]["walk"]["lists"] == [
        "shop-001",
        "bench-admin",
    ]

    # And each deep page is one index range scan, no sort, reading the page and one row more
    for case in ("client, deep page", "admin, deep page"):
        plan = document["full"]["plans"][case]
        assert "Index Scan" in plan["plan"] and not plan["sorted"] and plan["rows"] == 11, plan
    # ... and so is a terminal status's page, along (client_id, terminal_status, created_at, id)
    plan = document["full"]["plans"]["client, first page by status"]
    assert "ix_orders_client_terminal_created" in plan["plan"] and not plan["sorted"], plan

    # And every case has its ratio and verdict; the two targets are reported, not as specified at this size
    assert set(document["ratio_p99"]) == set(document["verdicts"]) == set(CASES)
    assert all(ratio > 0 for ratio in document["ratio_p99"].values())
    assert [t["target"] for t in document["targets"]] == [
        "client, first page p99 < 20 ms",
        "client, deep page p99 < 20 ms",
    ]
    assert all(t["measured"] > 0 and not t["as_specified"] for t in document["targets"])


def test_a_tiny_growth_bench_loads_the_history_and_measures_the_same_things_again_beside_the_empty_run(
    tmp_path: Path, saga_broker: RedisBroker
) -> None:
    config = tiny(tmp_path, history=3_000, phases=("orderflow",))

    document = run(config)

    assert installed() is saga_broker, "the sweep's broker on the bench's Redis is put back: later tests send to ours"
    growth = document["growth"]
    load = growth["load"]
    assert (load["rows_orders"], load["rows_idempotency_keys"], load["rows_order_events"]) == (3_000, 3_000, 18_000)
    assert load["rows_saga_steps"] == 5 * 3_000 and 0 < load["rows_payments"] < 3_000  # none for cancelled ones
    # The phases run beside the history, never over it: the reads after them still see every loaded order, and
    # the same open orders as the empty side's reads (not what the last phase happened to leave)
    assert growth["history"]["orders_at_reads"] == 3_000 + history.LIVE_AT_READS + history.PARKED_AT_READS
    [after] = growth["history"]["phases"]["orderflow"]
    assert (after["orders"], after["shipped"]) == (ORDERS, ORDERS), "the saga ran again on the loaded database"
    measures = {row["measure"]: row for row in growth["rows"]}
    assert set(measures) == {
        "saga orderflow orders/s",
        "reaper sweep, ms",
        "reaper counts and kept-money net, ms",
        "orderctl stats, ms",
        "orderctl stuck, ms",
        "orderctl audit --since 24h, ms",
        "console overview p99, ms",
        "console orders p99, ms",
        "console stuck p99, ms",
        "console orders of one client, cancelled p99, ms",
        "console one order p99, ms",
    }
    assert all(row["empty"] > 0 and row["history"] > 0 and row["ratio"] > 0 for row in measures.values())

    # And one more saga run with retention draining the history beside it: every order still ships, and at least
    # one whole pass ran (the keys older than 24 h in one go; 20 batches of 500 of the events older than 30 days)
    retention = growth["retention"]
    assert retention["shipped"] == ORDERS and retention["ratio"] > 0
    assert retention["passes"] >= 1 and retention["pass_max_ms"] > 0
    assert retention["rows_pruned"]["idempotency_keys"] >= 2_900
    assert retention["rows_pruned"]["order_events"] >= 10_000
