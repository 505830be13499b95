"""``stratus logs``: a replica's output, a service's controller or load balancer, a component's log.

As ``sky serve logs``: one target is tailed (a replica, ``--controller`` or ``--load-balancer``);
several replica ids are printed one after the other (``--no-follow``); ``--sync-down`` writes
the chosen targets (default: the controller, the load balancer and every replica) to
``~/stratus_logs/<service>_<time>/``. The controller and load-balancer logs are Stratus's shared
scheduler and router logs, filtered to the lines that name the service.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from ..client import StratusClient
from ..logfiles import COMPONENTS
from .common import api_errors, fail, state_of, write


def mentioning(chunks: Iterable[str], service: str) -> Iterator[str]:
    """The lines of a chunk stream that name ``service`` as a whole word (not ``svc`` in ``svc2``)."""
    word = re.compile(rf"(?<![\w.-]){re.escape(service)}(?![\w.-]|\.\w)")
    pending = ""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split("\n")
        kept = [line + "\n" for line in lines if word.search(line)]
        if kept:
            yield "".join(kept)
    if pending and word.search(pending):
        yield pending


def _targets(
    client: StratusClient, name: str, replica_ids: list[int], controller: bool, load_balancer: bool
) -> list[str | int]:
    chosen: list[str | int] = []
    if controller:
        chosen.append("controller")
    if load_balancer:
        chosen.append("load-balancer")
    chosen.extend(replica_ids)
    if chosen:
        return chosen
    replicas = client.get_service(name).get("replicas") or []
    return ["controller", "load-balancer", *sorted(r["replica_id"] for r in replicas)]


def _stream(
    client: StratusClient, name: str, target: str | int, *, follow: bool, tail: int | None
) -> Iterator[str]:
    if isinstance(target, int):
        return client.replica_logs(name, target, follow=follow, tail=tail)
    return mentioning(client.service_component_logs(name, target, follow=follow, tail=tail), name)


def sync_down(client: StratusClient, name: str, targets: list[str | int], *, tail: int | None) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = Path.home() / "stratus_logs" / f"{name}_{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    for target in targets:
        path = out / (f"replica_{target}.log" if isinstance(target, int) else f"{target}.log")
        with path.open("w", encoding="utf-8") as f:
            for chunk in _stream(client, name, target, follow=False, tail=tail):
                f.write(chunk)
        typer.echo(f"  {path}")
    return out


def logs(
    ctx: typer.Context,
    service_name: Annotated[str | None, typer.Argument(help="The service.", show_default=False)] = None,
    replica_ids: Annotated[
        list[int] | None, typer.Argument(help="Replica IDs (several with --no-follow or --sync-down).")
    ] = None,
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
    sync_down_: Annotated[
        bool,
        typer.Option(
            "--sync-down",
            help="Write the logs to ~/stratus_logs/ (the chosen targets; default all of the service's).",
        ),
    ] = False,
) -> None:
    """Stream a replica's logs, or the controller's or load balancer's (as `sky serve logs`)."""
    ids = list(replica_ids or [])
    with api_errors(), state_of(ctx).client() as client:
        if component is not None:
            if service_name is not None or controller or load_balancer or sync_down_:
                fail("--component shows a Stratus component's own log; give it without a service")
            chunks: Iterator[str] = client.component_logs(component, follow=follow, tail=tail)
        elif service_name is None:
            fail(
                "give a service and one of REPLICA_ID, --controller or --load-balancer (or --component NAME)"
            )
        elif sync_down_:
            targets = _targets(client, service_name, ids, controller, load_balancer)
            typer.echo(f"Syncing down the logs of {service_name!r}:")
            out = sync_down(client, service_name, targets, tail=tail)
            typer.echo(f"Logs of {service_name!r} are in {out}")
            return
        else:
            chosen = len(ids) + controller + load_balancer
            if chosen == 0 or (chosen > 1 and (follow or controller or load_balancer)):
                fail(
                    "one and only one of --controller, --load-balancer, REPLICA_ID can be followed; "
                    "several replica IDs with --no-follow, or any targets with --sync-down"
                )
            targets = _targets(client, service_name, ids, controller, load_balancer)
            chunks = _each(client, service_name, targets, follow=follow, tail=tail)
        try:
            for chunk in chunks:
                write(chunk)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def _each(
    client: StratusClient, name: str, targets: list[str | int], *, follow: bool, tail: int | None
) -> Iterator[str]:
    for target in targets:
        if len(targets) > 1:
            yield f"==> {name} replica {target} <==\n"
        yield from _stream(client, name, target, follow=follow, tail=tail)


def register(app: typer.Typer) -> None:
    app.command()(logs)
