"""``stratus check``: which clouds replicas can be placed on, and for each that cannot, why and
what to do (like ``sky check``). A client of ``GET /v1/clouds``: the answer is the provisioner's
last credentials check (it runs where the credentials are, which may not be this machine)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from .cli.common import api_errors, state_of
from .client import StratusClient


def fetch_clouds(client: StratusClient) -> dict[str, Any]:
    result: dict[str, Any] = client._request("GET", "/clouds")
    return result


def render_check(body: dict[str, Any]) -> str:
    """The human answer (pure)."""
    lines: list[str] = []
    if not body.get("checked"):
        lines.append("No provisioner has checked the clouds yet (is it running? `stratus local status`).")
    else:
        when = datetime.fromtimestamp(float(body.get("checked_at") or 0), UTC).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
        lines.append(f"Checked by the provisioner at {when}.")
    if body.get("allowed"):
        lines.append(f"allowed_clouds ($STRATUS_HOME/config.yaml): {', '.join(body['allowed'])}")
    lines.append("")
    for cloud in body.get("clouds") or []:
        mark = "enabled" if cloud["enabled"] else "disabled"
        lines.append(f"  {cloud['cloud'].upper():<6} {mark}")
        if not cloud["enabled"] and cloud.get("reason"):
            lines.append(f"         {cloud['reason']}")
    lines.append("  LOCAL  enabled (this machine)")
    lines.append("")
    enabled = body.get("enabled") or ["local"]
    lines.append(f"Enabled: {', '.join(enabled)}. Replicas are placed on the cheapest of these that fits.")
    return "\n".join(lines)


def check(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Which clouds are enabled; for each that is not, why and what to do."""
    with api_errors(), state_of(ctx).client() as client:
        body = fetch_clouds(client)
    typer.echo(json.dumps(body, indent=2) if as_json else render_check(body))


def register(app: typer.Typer) -> None:
    app.command("check")(check)
