"""`orderctl events`: order events and their webhook deliveries; list them, show one, redeliver one."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from scripts.orderctl.options import AsJson, order_ids
from scripts.orderctl.output import CliError, console, emit_json, table
from scripts.orderctl.servers import connect

events_app = typer.Typer(no_args_is_help=True, help="Order events and their webhook deliveries: list, show, redeliver.")

Order = Annotated[str | None, typer.Option("--order", help="Only this order's events.")]
ClientId = Annotated[str | None, typer.Option("--client", help="Only this client's events (a token's sub).")]
Limit = Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many, newest first.")]
EventId = Annotated[str, typer.Argument(help="The event id (also the webhook-id header shops receive).")]


def event_id_of(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CliError(f"not an event id: {value!r}") from None


@events_app.command("list")
def events_list(order: Order = None, client: ClientId = None, limit: Limit = 50, as_json: AsJson = False) -> None:
    """The newest order events with how many of their webhook deliveries are delivered, pending or failed."""
    from workers.operator.events import list_events

    servers = connect()
    order_id = order_ids([order])[0] if order else None
    rows = list_events(servers.database_url, order_id=order_id, client_id=client, limit=limit)
    if as_json:
        return emit_json({"count": len(rows), "events": rows})
    columns = ["id", "order_id", "client_id", "sequence", "type", "created_at", "delivered", "pending", "failed"]
    console.print(table(f"events: {len(rows)}", rows, columns))


@events_app.command("show")
def events_show(event_id: EventId, as_json: AsJson = False) -> None:
    """One event, its payload, and every webhook delivery with its attempts."""
    from workers.operator.events import event_story

    servers = connect()
    story = event_story(servers.database_url, event_id_of(event_id))
    if story is None:
        raise CliError(f"no event {event_id}")
    if as_json:
        return emit_json(story)
    event = story["event"]
    console.print(table("event", [event], ["id", "order_id", "client_id", "sequence", "type", "created_at"]))
    columns = ["id", "url", "status", "attempts", "last_response_code", "last_error", "next_attempt_at"]
    console.print(table(f"deliveries: {len(story['deliveries'])}", story["deliveries"], columns))
    for delivery in story["deliveries"]:
        attempts = ["attempt", "started_at", "latency_ms", "response_code", "error"]
        console.print(table(f"attempts of {delivery['id']}", delivery["attempt_log"], attempts))


@events_app.command("redeliver")
def events_redeliver(event_id: EventId, as_json: AsJson = False) -> None:
    """Send the event again to every enabled endpoint that had it (same webhook-id, so receivers can dedupe)."""
    from workers.operator.events import event_story, redeliver

    servers = connect()
    parsed = event_id_of(event_id)
    if event_story(servers.database_url, parsed) is None:
        raise CliError(f"no event {event_id}")
    sent = redeliver(servers.database_url, parsed)
    if as_json:
        return emit_json({"event_id": event_id, "deliveries": sent})
    console.print(f"event {event_id}: {len(sent)} deliveries queued again")
