"""``stratus events``: the recorded events (the audit trail), paged or followed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from .. import render
from .common import api_errors, fail, parse_when, state_of


def events(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="Only this service's events.")
    ] = None,
    type_: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="Only these event types (repeatable).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this time: 10m, 2h, 1d or ISO 8601.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this time: 10m, 2h, 1d or ISO 8601.")] = None,
    after: Annotated[int | None, typer.Option(help="Page forward from this log position.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Show at most this many (the newest, unless --after).")
    ] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    why: Annotated[
        int | None, typer.Option("--why", help="With --service: the causation chain of this replica.")
    ] = None,
) -> None:
    """Show the recorded events (the audit trail), newest last."""
    if why is not None:  # the audit view (services/api/cli_ops.py)
        from ..cli_ops import show_why

        if service is None:
            fail("--why REPLICA_ID needs --service NAME")
        return show_why(ctx, service, why, as_json)
    now = datetime.now(UTC)
    params: dict[str, Any] = {"service": service, "type": type_ or None}
    if since:
        params["since"] = parse_when(since, now).isoformat()
    if until:
        params["until"] = parse_when(until, now).isoformat()

    if not as_json:
        typer.echo(render.event_header())

    def show(event: dict[str, Any]) -> None:
        typer.echo(json.dumps(event, sort_keys=True) if as_json else render.event_line(event))

    with api_errors(), state_of(ctx).client() as client:
        if after is None:
            page = client.events(**params, last=min(limit, 1000))
            for event in page["events"]:
                show(event)
            cursor = page["next_after"]
        else:
            cursor, shown = after, 0
            while shown < limit:
                page = client.events(**params, after=cursor, limit=min(1000, limit - shown))
                for event in page["events"]:
                    show(event)
                shown += len(page["events"])
                cursor = page["next_after"]
                if not page["has_more"]:
                    break
        if follow:
            stream_params = {"service": service, "type": type_ or None, "after": cursor}
            try:
                for event in client.stream_events(**stream_params):
                    show(event)
            except KeyboardInterrupt:
                raise typer.Exit(130) from None
            fail(f"the API at {client.base_url} ended the event stream (is it shutting down?)")


def register(app: typer.Typer) -> None:
    app.command()(events)
