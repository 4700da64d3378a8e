"""Commands on orders: show one, find the stuck ones, retry them, compensate (cancel) them."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scripts.orderctl.bulk import apply, report
from scripts.orderctl.options import AsJson, DryRun, OlderThan, Rate, Reason, note, order_ids, seconds
from scripts.orderctl.output import CliError, ago, console, emit_json, table
from scripts.orderctl.servers import connect

if TYPE_CHECKING:
    from workers.operator.actions import Change


def known(database_url: str, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    from workers.operator.views import missing

    if unknown := missing(database_url, ids):
        raise CliError(f"no order {', '.join(map(str, unknown))}")
    return ids


def show(order_id: Annotated[str, typer.Argument(help="The order id.")], as_json: AsJson = False) -> None:
    """An order with its lines, its payment and its timeline."""
    [parsed] = order_ids([order_id])
    servers = connect()
    from workers.operator.views import order_story

    story = order_story(servers.database_url, parsed)
    if story is None:
        raise CliError(f"no order {parsed}")
    if as_json:
        return emit_json(story)
    console.print(table("order", [{"field": k, "value": v} for k, v in story["order"].items()], ["field", "value"]))
    console.print(table("lines", story["lines"], ["line_no", "product_id", "quantity", "unit_price_cents"]))
    payment = [story["payment"]] if story["payment"] else []
    console.print(table("payment", payment, ["status", "amount_cents", "refunded_cents", "intent_id", "error"]))
    steps = ["started_at", "kind", "step", "attempt", "outcome", "duration_ms", "error_code", "error_message"]
    console.print(table("timeline", story["timeline"], steps))


def stuck(
    older_than: OlderThan = "5m",
    limit: Annotated[int, typer.Option(min=1, help="List at most this many orders.")] = 200,
    as_json: AsJson = False,
) -> None:
    """Live orders that stopped moving (lease run out, or no progress), and the orders that need a person."""
    idle_s = seconds(older_than)
    servers = connect()
    from workers.operator.views import stuck as find_stuck

    found = find_stuck(servers.database_url, idle_s, limit)
    if as_json:
        return emit_json(found)
    columns = ["id", "status", "step", "age", "idle", "lease", "deliveries", "last_error"]
    live, parked = ([row | durations(row) for row in found[kind]] for kind in ("stuck", "needs_attention"))
    console.print(table(f"stuck: {len(live)} (lease run out, or no progress for {older_than})", live, columns))
    title = f"NEEDS ATTENTION: {len(parked)} (a compensation failed; `retry` re-runs it)"
    console.print(table(title, parked, columns, style="bold red"))


def durations(row: dict[str, Any]) -> dict[str, str]:
    # A negative lease ran out that long ago.
    return {"age": ago(row["age_s"]), "idle": ago(row["idle_s"]), "lease": ago(row["lease_left_s"])}


def retry(
    order_id: Annotated[list[str] | None, typer.Argument(help="Order ids.", show_default=False)] = None,
    all_stuck: Annotated[
        bool, typer.Option("--all-stuck", help="Every stuck live order (see `stuck`); needs_attention ones only by id.")
    ] = False,
    older_than: OlderThan = "5m",
    dry_run: DryRun = False,
    rate: Rate = 20,
    reason: Reason = "manual retry",
    as_json: AsJson = False,
) -> None:
    """Re-drive orders from their recorded state; a needs_attention order re-runs its failed compensation."""
    if bool(order_id) == all_stuck:
        raise CliError("give order ids, or --all-stuck (not both)")
    ids, idle_s = order_ids(order_id or []), seconds(older_than)
    servers = connect()
    from workers.operator import actions as operations
    from workers.operator import views as order_views

    if all_stuck:
        ids = [uuid.UUID(row["id"]) for row in order_views.stuck(servers.database_url, idle_s, 10_000)["stuck"]]
    known(servers.database_url, ids)

    def act(one: uuid.UUID) -> Change:
        return operations.retry(servers.database_url, one, dry_run=dry_run, note=note(reason))

    report("retry", apply("retry", ids, act, float("inf") if dry_run else rate, as_json), dry_run, as_json)


def compensate(
    order_id: Annotated[list[str], typer.Argument(help="Order ids.", show_default=False)],
    dry_run: DryRun = False,
    rate: Rate = 20,
    reason: Reason = "manual cancel",
    as_json: AsJson = False,
) -> None:
    """Undo what the orders did (release stock, refund, ...) and cancel them; shipped orders are refused."""
    ids = order_ids(order_id)
    servers = connect()
    from workers.operator import actions as operations

    known(servers.database_url, ids)

    def act(one: uuid.UUID) -> Change:
        return operations.compensate(servers.database_url, one, dry_run=dry_run, note=note(reason))

    report("compensate", apply("compensate", ids, act, float("inf") if dry_run else rate, as_json), dry_run, as_json)
