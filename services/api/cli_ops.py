"""Operations commands: audit replay, causation, dead letters (clients of the HTTP API).

stratus replay --at TIME | --position N [--service NAME] [--all] [--json]
stratus why SERVICE REPLICA_ID [--json]      (also: stratus events --service S --why ID)
stratus dead-letters list [--consumer C] [--json]
stratus dead-letters retry ID... | --all [--consumer C]
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from .cli.common import api_errors, fail, parse_when, state_of
from .client import StratusClient

dead_letters_app = typer.Typer(no_args_is_help=True, help="Messages a service gave up on, and retrying them.")


# --------------------------------------------------------------------------- rendering (pure)


def _ts(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def render_replay(body: dict[str, Any]) -> str:
    lines = [f"State at log position {body['position']} ({_ts(body.get('at'))} UTC; head {body['head']})"]
    if not body["services"]:
        lines.append("No services.")
    for svc in body["services"]:
        auto = svc.get("autoscaling") or {}
        lines.append("")
        lines.append(
            f"{svc['name']}  {svc['status']}  version {svc['version']}  versions {svc['versions']}  "
            f"ready {svc['replicas_ready']}/{svc['replicas_total']}  endpoint {svc.get('endpoint') or '-'}"
        )
        target = auto.get("target_replicas")
        lines.append(
            f"  target replicas: {target if target is not None else '-'}"
            f"  (min {auto.get('min_replicas')}, max {auto.get('max_replicas')})"
        )
        if auto.get("last_decision_reason"):
            lines.append(
                f"  last decision ({_ts(auto.get('last_decision_at'))}): {auto['last_decision_reason']}"
            )
        if svc["replicas"]:
            lines.append(
                f"  {'ID':<4}{'VERSION':<9}{'STATUS':<22}{'CLOUD':<8}{'REGION':<14}{'ZONE':<16}PRICE/H"
            )
        for r in svc["replicas"]:
            price = f"{r['price_per_hour']:.4f}" if r.get("price_per_hour") else "-"
            lines.append(
                f"  {r['replica_id']:<4}{r['version']:<9}{r['status']:<22}{r.get('cloud') or '-':<8}"
                f"{r.get('region') or '-':<14}{r.get('zone') or '-':<16}{price}"
            )
    return "\n".join(lines)


def _event_line(e: dict[str, Any]) -> str:
    return (
        f"  #{e['position']:<8}{_ts(e['occurred_at'])}  {e['type']:<28}{e['stream_id']}"
        f"  (event {e['event_id'][:8]}, caused by {(e.get('causation_id') or '-')[:8]})"
    )


def render_why(body: dict[str, Any]) -> str:
    lines = [f"Replica {body['replica_id']} of {body['service']}:"]
    lines += [_event_line(e) for e in body["history"]]
    lines.append("")
    lines.append("Caused by (newest first):")
    for i, e in enumerate(body["chain"]):
        lines.append(_event_line(e))
        if i == body.get("inferred_after"):
            lines.append("  (no recorded cause: a periodic resync; below: the last change of intent)")
    if body.get("root_request_id"):
        who = f" by {body['principal']}" if body.get("principal") else ""
        lines.append(f"  <- API request {body['root_request_id']}{who}")
    else:
        lines.append("  <- (no recorded request: an event from before causation ids)")
    return "\n".join(lines)


def render_dead_letters(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No dead letters."
    lines = [f"{'ID':<6}{'CONSUMER':<20}{'POSITION':<10}{'DELIVERIES':<12}{'RETRY':<24}REASON"]
    for r in rows:
        retry = r.get("retry_state") or "-"
        lines.append(
            f"{r['id']:<6}{r['consumer']:<20}{r.get('position') or '-':<10}{r['deliveries']:<12}"
            f"{retry:<24}{r['reason']}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- API calls


def fetch_replay(client: StratusClient, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = client._request("GET", "/replay", params=params)
    return result


def fetch_why(client: StratusClient, service: str, replica_id: int) -> dict[str, Any]:
    result: dict[str, Any] = client._request("GET", f"/services/{service}/replicas/{replica_id}/why")
    return result


# --------------------------------------------------------------------------- commands


def replay(
    ctx: typer.Context,
    at: Annotated[str | None, typer.Option("--at", help="A time: ISO 8601, or 10m / 2h / 1d ago.")] = None,
    position: Annotated[int | None, typer.Option("--position", help="A log position.")] = None,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Only this service.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include services terminated by then.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """Show the whole state as it was at a time or log position (rebuilt from the event log)."""
    if (at is None) == (position is None):
        fail("give exactly one of --at TIME or --position N")
    params: dict[str, Any] = {"service": service, "all": all_ or None}
    if at is not None:
        try:
            params["at"] = parse_when(at, datetime.now(UTC)).isoformat()
        except ValueError as exc:
            fail(f"--at: {exc}")
    else:
        params["position"] = position
    with api_errors(), state_of(ctx).client() as client:
        body = fetch_replay(client, **params)
    typer.echo(json.dumps(body, indent=2) if as_json else render_replay(body))


def show_why(ctx: typer.Context, service: str, replica_id: int, as_json: bool) -> None:
    with api_errors(), state_of(ctx).client() as client:
        body = fetch_why(client, service, replica_id)
    typer.echo(json.dumps(body, indent=2) if as_json else render_why(body))


def why(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service.")],
    replica_id: Annotated[int, typer.Argument(help="The replica's ID.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the chain as JSON.")] = False,
) -> None:
    """Why a replica exists: its events and the chain of causes back to the user action."""
    show_why(ctx, service, replica_id, as_json)


@dead_letters_app.command("list")
def dead_letters_list(
    ctx: typer.Context,
    consumer: Annotated[str | None, typer.Option("--consumer", help="Only this consumer's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
) -> None:
    """The messages consumers gave up on, with the reason and the state of any retry."""
    with api_errors(), state_of(ctx).client() as client:
        body = client._request("GET", "/dead-letters", params={"consumer": consumer})
    rows = body["dead_letters"]
    typer.echo(json.dumps(rows, indent=2) if as_json else render_dead_letters(rows))


@dead_letters_app.command("retry")
def dead_letters_retry(
    ctx: typer.Context,
    ids: Annotated[
        list[int] | None, typer.Argument(help="Dead letter IDs (`stratus dead-letters list`).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter not yet redelivered.")] = False,
    consumer: Annotated[
        str | None, typer.Option("--consumer", help="With --all: only this consumer's.")
    ] = None,
) -> None:
    """Ask the consumer to handle them again (idempotent: a handled message has no second effect)."""
    if bool(ids) == all_:
        fail("give dead letter IDs or --all (not both)")
    body: dict[str, Any] = {"all": True, "consumer": consumer} if all_ else {"ids": ids}
    with api_errors(), state_of(ctx).client() as client:
        result = client._request("POST", "/dead-letters/retry", body=body)
    typer.echo(result["message"])


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
    app.command("why")(why)
    app.add_typer(dead_letters_app, name="dead-letters")
