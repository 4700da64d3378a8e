"""The benchmark at toy size: both chains and intake run on real servers and the JSON says what happened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.bench import BenchConfig, run

pytestmark = pytest.mark.slow

ORDERS = 30


def test_a_tiny_bench_ships_every_order_of_both_chains_and_writes_a_well_formed_document(tmp_path: Path) -> None:
    # Given a bench of 30 orders, one repetition, one worker process with two threads
    config = BenchConfig(
        orders=ORDERS, processes=1, threads=2, repeat=1, warmup=5, intake_seconds=1.0, intake_concurrency=2,
        intake_rate=20.0, json_out=tmp_path / "bench.json", log_dir=tmp_path / "logs",
    )  # fmt: skip

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
        assert measured["commits_per_order"] >= 5, "five steps, each in its own committed transaction"
        assert measured["cpu_s_per_order"]["workers"] > 0
        assert measured["cpu_s_per_order"]["total"] >= measured["cpu_s_per_order"]["workers"]
        assert measured["worker_processes"] == 1 and measured["peak_rss_mib_per_worker"] > 0
        assert document[phase]["summary"]["orders_per_s"]["median"] == measured["orders_per_s"]
    assert document["orderflow"]["runs"][0]["cpu_s_per_order"]["stripe"] > 0, "the saga charged through Stripe"

    # And the ratio is the paired quotient of the two chains' throughput
    [ratio] = document["ratio"]["per_repetition"]
    of, base = (document[p]["runs"][0]["orders_per_s"] for p in ("orderflow", "baseline"))
    assert ratio > 0 and ratio == pytest.approx(of / base)

    # And intake answered both loops without errors, and every answered POST wrote an order
    [intake] = document["intake"]["runs"]
    for loop in ("closed", "open"):
        assert intake[loop]["requests"] > 0 and intake[loop]["errors"] == 0, loop
        assert 0 < intake[loop]["p50_ms"] <= intake[loop]["p99_ms"], loop
    assert intake["open"]["requests"] == int(config.intake_rate * config.intake_seconds)
    assert intake["orders_accepted"] >= intake["closed"]["requests"] + intake["open"]["requests"]
    assert intake["commits_per_order"] >= 1

    # And every target of the issue is reported next to its measurement
    assert [t["target"].split()[0] for t in document["targets"]] == ["orderflow", "intake", "peak"]
    assert all(isinstance(t["measured"], float) and isinstance(t["met"], bool) for t in document["targets"])
