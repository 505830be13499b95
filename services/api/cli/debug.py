"""``stratus debug ...``: fault injection (preempt a replica as if the cloud had)."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import api_errors, sentence, state_of

debug_app = typer.Typer(no_args_is_help=True, help="Debugging tools (fault injection).")


def preempt(
    ctx: typer.Context,
    service_name: Annotated[str, typer.Argument(help="The service.", show_default=False)],
    replica_id: Annotated[int, typer.Argument(help="The replica to preempt.", show_default=False)],
) -> None:
    """Record a PreemptionRequested: the provider then acts as if the cloud preempted the replica."""
    with api_errors(), state_of(ctx).client() as client:
        result = client.preempt_replica(service_name, replica_id)
    typer.echo(sentence(result["message"]))


def register(app: typer.Typer) -> None:
    debug_app.command("preempt")(preempt)
    app.add_typer(debug_app, name="debug")
