"""The bench's statement count reads the Postgres log as the server writes it (log_statement = 'all')."""

from __future__ import annotations

from pathlib import Path

from scripts.bench.statements import StatementLog, logged

LOG = """\
2026-12-03 10:18:44.663 UTC [2024] LOG:  database system is ready to accept connections
2026-12-03 10:20:12.106 UTC [31] LOG:  statement: BEGIN
2026-12-03 10:20:12.107 UTC [31] LOG:  execute _pg3_0: SELECT orders.id FROM orders
\tWHERE orders.id = $1 FOR NO KEY UPDATE
2026-12-03 10:20:12.107 UTC [31] DETAIL:  Parameters: $1 = 'f3c1'
2026-12-03 10:20:12.108 UTC [31] LOG:  execute <unnamed>: UPDATE orders SET status = $1
2026-12-03 10:20:12.109 UTC [40] LOG:  statement: SELECT status, count(*) FROM orders GROUP BY status
2026-12-03 10:20:12.110 UTC [31] LOG:  statement: COMMIT
2026-12-03 10:20:12.111 UTC [32] LOG:  statement:\x20
\tUPDATE bench_orders SET step = 1 WHERE id = $1
"""  # the last one as Postgres writes a statement that starts on a new line: "statement: " and a line break


def test_every_statement_is_counted_once_with_its_continuation_lines_and_the_skipped_pids_left_out() -> None:
    statements = logged(LOG, skip={40})

    assert statements == [
        "BEGIN",
        "SELECT orders.id FROM orders \tWHERE orders.id = $1 FOR NO KEY UPDATE",
        "UPDATE orders SET status = $1",
        "COMMIT",
        " \tUPDATE bench_orders SET step = 1 WHERE id = $1",
    ]


def test_the_count_per_order_sets_begin_and_commit_apart_and_reads_only_between_the_marks(tmp_path: Path) -> None:
    path = tmp_path / "postgres.log"
    path.write_text("2026-12-03 10:00:00.000 UTC [9] LOG:  statement: SELECT 'before the pass'\n")
    log = StatementLog(path, skip={40})
    log.mark_start()
    with path.open("a") as server:
        server.write(LOG)
    log.mark_end()
    with path.open("a") as server:
        server.write("2026-12-03 10:30:00.000 UTC [9] LOG:  statement: SELECT 'after the pass'\n")

    counted = log.counted(orders=2)

    assert counted["per_order"] == 2.5
    assert counted["transaction_control_per_order"] == 1.0
    assert counted["queries_per_order"] == 1.5
    assert counted["most_frequent"]["BEGIN"] == 0.5
