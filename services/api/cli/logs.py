"""``stratus logs``: a replica's output, a service's controller or load balancer, a component's log."""

from __future__ import annotations

from typing import Annotated

import typer

from ..logfiles import COMPONENTS
from .common import api_errors, fail, state_of, write


def logs(
    ctx: typer.Context,
    service_name: Annotated[str | None, typer.Argument(help="The service.", show_default=False)] = None,
    replica_id: Annotated[int | None, typer.Argument(help="A replica's ID.", show_default=False)] = None,
    controller: Annotated[bool, typer.Option("--controller", help="The service's controller logs.")] = False,
    load_balancer: Annotated[
        bool, typer.Option("--load-balancer", help="The service's load balancer logs.")
    ] = False,
    component: Annotated[
        str | None,
        typer.Option(
            "--component",
            help=f"A Stratus component's log (the local stack's): {', '.join(COMPONENTS)}.",
            show_default=False,
        ),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Keep streaming new lines.")] = True,
    tail: Annotated[int | None, typer.Option("--tail", help="Start this many lines before the end.")] = None,
) -> None:
    """Stream a replica's logs, or the controller's or load balancer's (as `sky serve logs`)."""
    with api_errors(), state_of(ctx).client() as client:
        if component is not None:
            if service_name is not None or controller or load_balancer:
                fail("--component shows a Stratus component's own log; give it without a service")
            chunks = client.component_logs(component, follow=follow, tail=tail)
        else:
            if service_name is None:
                fail(
                    "give a service and one of REPLICA_ID, --controller or --load-balancer "
                    "(or --component NAME)"
                )
            chosen = sum([replica_id is not None, controller, load_balancer])
            if chosen != 1:
                fail("one and only one of --controller, --load-balancer, REPLICA_ID can be specified")
            if replica_id is not None:
                chunks = client.replica_logs(service_name, replica_id, follow=follow, tail=tail)
            else:
                which = "controller" if controller else "load-balancer"
                chunks = client.service_component_logs(service_name, which, follow=follow, tail=tail)
        try:
            for chunk in chunks:
                write(chunk)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def register(app: typer.Typer) -> None:
    app.command()(logs)
