"""``stratus up | update | status | down``: deploy, change, show and tear down services."""

from __future__ import annotations

import fnmatch
import functools
import inspect
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from libs.fleet.status import GAVE_UP

from .. import render
from ..cli_keys import tls_pems
from ..client import ApiRequestError, StratusClient
from .common import EnvOpt, YesOpt, api_errors, default_name, fail, sentence, show_plan, state_of
from .overrides import (
    AsyncOpt,
    CloudOpt,
    CpusOpt,
    EnvFileOpt,
    GpusOpt,
    MemoryOpt,
    PortsOpt,
    RegionOpt,
    SecretOpt,
    SpotOpt,
    TaskOverrides,
    ZoneOpt,
    prepare,
)
from .waiting import wait_for_version

FAILED_SERVICE_STATUSES = frozenset({"FAILED", "FAILED_CLEANUP", "TERMINATED", "SHUTTING_DOWN"})
R = TypeVar("R")


def _override_options(
    env: EnvOpt = None,
    cloud: CloudOpt = None,
    region: RegionOpt = None,
    zone: ZoneOpt = None,
    gpus: GpusOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    use_spot: SpotOpt = None,
    ports: PortsOpt = None,
    env_file: EnvFileOpt = None,
    secret: SecretOpt = None,
) -> TaskOverrides:
    """The options of ``sky serve up/update`` that override the YAML, in the order --help lists them."""
    return TaskOverrides(
        cloud=cloud, region=region, zone=zone, gpus=gpus, cpus=cpus, memory=memory, use_spot=use_spot,
        ports=ports, env=env, env_file=env_file, secret=secret,
    )  # fmt: skip


def with_overrides(command: Callable[..., R]) -> Callable[..., R]:
    """A typer command whose keyword-only ``task: TaskOverrides`` parameter stands for the override
    options: typer sees ``_override_options``' parameters in its place (the same flags and help in
    every command that has them), and the command gets them built into one ``TaskOverrides``."""
    hints = get_type_hints(command, include_extras=True)
    options = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(_override_options, eval_str=True).parameters.values()
    ]
    params: list[inspect.Parameter] = []
    for p in inspect.signature(command).parameters.values():
        params.extend(options if p.name == "task" else [p.replace(annotation=hints[p.name])])
    names = [p.name for p in options]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        task = _override_options(**{name: kwargs.pop(name, None) for name in names})
        return command(*args, task=task, **kwargs)

    wrapper.__signature__ = inspect.Signature(params, return_annotation=hints.get("return"))  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


class UpdateMode(StrEnum):
    rolling = "rolling"
    blue_green = "blue_green"


def up(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The service YAML.", show_default=False)],
    service_name: Annotated[
        str | None,
        typer.Option(
            "-n", "--service-name", help="Service name (default: the YAML's name, else the file's stem)."
        ),
    ] = None,
    *,
    task: TaskOverrides,
    async_: AsyncOpt = False,
    yes: YesOpt = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the endpoint to be READY.")] = 1800.0,
    detach: Annotated[bool, typer.Option("--detach", help="Do not wait for READY.")] = False,
    poll_interval: Annotated[float, typer.Option(hidden=True)] = 1.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan (first replica's placement and price) and stop.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: print the plan as JSON.")] = False,
) -> None:
    """Deploy a service: show the plan, then follow it until its endpoint is READY or it failed."""
    text, yaml_name, overrides = prepare(file, task)
    detach = detach or async_
    tls = tls_pems(file, text, overrides)  # service.tls files are read here, not by the API
    name = service_name or yaml_name or default_name(file)
    with api_errors(), state_of(ctx).client() as client:
        plan = client.create_service(yaml_text=text, name=name, env=overrides, dry_run=True, tls=tls)
        if dry_run:  # no cloud is called: the placement comes from the catalog
            if as_json:
                typer.echo(json.dumps(plan, indent=2))
            else:
                show_plan(plan, "Would deploy")
            return
        show_plan(plan, "Deploying")
        if not yes:
            typer.confirm("Proceed?", default=True, abort=True)
        plan = client.create_service(yaml_text=text, name=plan["name"], env=overrides, dry_run=False, tls=tls)
        name = plan["name"]
        typer.echo(
            f"Service {name!r} requested (version {plan['version']}, log position {plan['position']})."
        )
        if detach:
            typer.echo(f"Follow it with `stratus status {name}`.")
            return
        wait_until_ready(client, name, timeout=timeout, poll_interval=poll_interval)


def wait_until_ready(client: StratusClient, name: str, *, timeout: float, poll_interval: float) -> None:
    typer.echo(f"Waiting for {name!r} to be READY (Ctrl-C stops waiting; the service keeps deploying).")
    deadline = time.monotonic() + timeout
    last = None
    svc: dict[str, Any] = {}
    try:
        while True:
            svc = client.get_service(name)
            status, reason = svc["status"], svc.get("status_reason") or ""
            line = f"  {status}: {reason}" if reason else f"  {status}"
            if line != last:
                typer.echo(line)
                last = line
            if status == "READY" and svc.get("endpoint"):
                typer.echo(f"Service {name!r} is READY.\nEndpoint: {render.endpoint_url(svc)}")
                return
            # SkyServe's FAILED also covers a failure Stratus is retrying: wait unless it gave up.
            if status in FAILED_SERVICE_STATUSES and (status != "FAILED" or GAVE_UP in reason):
                fail(
                    f"service {name!r} is {status}: {reason or 'no reason recorded'}\n"
                    f"hint: `stratus status {name} -v` and `stratus logs {name} REPLICA_ID` show more"
                )
            if time.monotonic() >= deadline:
                fail(
                    f"service {name!r} is not READY after {timeout:g}s (status {status}); "
                    f"it keeps deploying: `stratus status {name}`"
                )
            time.sleep(poll_interval)
    except KeyboardInterrupt:
        typer.echo(f"\nStopped waiting; {name!r} keeps deploying: `stratus status {name}`", err=True)
        raise typer.Exit(130) from None


def update(
    ctx: typer.Context,
    service_name: Annotated[str, typer.Argument(help="The service to update.", show_default=False)],
    file: Annotated[Path, typer.Argument(help="The new service YAML.", show_default=False)],
    mode: Annotated[
        UpdateMode,
        typer.Option(
            help="rolling: replace replicas gradually; blue_green: switch "
            "traffic once the new version is READY."
        ),
    ] = UpdateMode.rolling,
    *,
    task: TaskOverrides,
    async_: AsyncOpt = False,
    yes: YesOpt = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the new version.")] = 1800.0,
    poll_interval: Annotated[float, typer.Option(hidden=True)] = 1.0,
) -> None:
    """Update a service to a new version of its YAML, then follow it until that version serves
    (--async: return once requested)."""
    text, _, overrides = prepare(file, task)
    tls = tls_pems(file, text, overrides)
    with api_errors(), state_of(ctx).client() as client:
        plan = client.update_service(
            service_name, yaml_text=text, env=overrides, mode=mode.value, dry_run=True, tls=tls
        )
        show_plan(plan, "Updating")
        if not yes:
            typer.confirm("Proceed?", default=True, abort=True)
        plan = client.update_service(
            service_name, yaml_text=text, env=overrides, mode=mode.value, dry_run=False, tls=tls
        )
        typer.echo(f"Update of {service_name!r} to version {plan['version']} requested ({mode.value}).")
        if async_:
            typer.echo(f"Follow it with `stratus status {service_name}`.")
            return
        wait_for_version(client, service_name, plan["version"], timeout=timeout, poll_interval=poll_interval)


def status(
    ctx: typer.Context,
    service_names: Annotated[
        list[str] | None, typer.Argument(help="Services to show (default: all).")
    ] = None,
    endpoint: Annotated[
        bool, typer.Option("--endpoint", help="Print only the service's endpoint (--endpoint [PORT] NAME).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Also policy, scaling and versions.")
    ] = False,
    all_: Annotated[bool, typer.Option("-a", "--all", help="Include terminated services.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Show services and their replicas (as `sky serve status`)."""
    names = list(service_names or [])
    port = None
    if endpoint and len(names) == 2 and names[0].isdigit():  # the docs' `--endpoint PORT NAME`
        port, names = int(names[0]), names[1:]
    if endpoint and len(names) != 1:
        fail("--endpoint needs exactly one service name: stratus status --endpoint [PORT] NAME")
    with api_errors(), state_of(ctx).client() as client:
        if endpoint:
            svc = client.get_service(names[0])
            if not svc.get("endpoint"):
                fail(f"service {names[0]!r} has no endpoint yet (status {svc['status']})")
            shown = render.endpoint_text(svc["endpoint"], tls=render.is_tls(svc))
            served = (svc.get("spec") or {}).get("service", {}).get("ports")
            if port is not None and port != served:
                fail(f"service {names[0]!r} serves its replicas' port {served} only (service.ports): {shown}")
            typer.echo(shown)
            return
        listing = client.list_services(names or None, include_terminated=all_)
    services: list[dict[str, Any]] = listing["services"]
    missing = [n for n in names if n not in {s["name"] for s in services}]
    if as_json:
        typer.echo(json.dumps(services, indent=2))
    elif services or not missing:
        typer.echo(render.status_report(services, datetime.now(UTC), verbose=verbose))
    if missing:
        fail(
            "; ".join(f"service {n!r} not found" for n in missing) + " (`stratus status` lists the services)"
        )


def down(
    ctx: typer.Context,
    service_names: Annotated[
        list[str] | None, typer.Argument(help="Services (or glob patterns, e.g. 'llm-*') to tear down.")
    ] = None,
    all_: Annotated[bool, typer.Option("-a", "--all", help="Tear down every service.")] = False,
    purge: Annotated[
        bool, typer.Option("-p", "--purge", help="Forget services or replicas even if their cleanup failed.")
    ] = False,
    replica_id: Annotated[
        int | None, typer.Option("--replica-id", help="Terminate only this replica of the service.")
    ] = None,
    yes: YesOpt = False,
) -> None:
    """Tear down services (or one replica, which the scheduler replaces)."""
    names = list(service_names or [])
    if all_ and names:
        fail("give service names or --all, not both")
    if not all_ and not names:
        fail("give the services to tear down (stratus down NAME ...) or --all")
    if replica_id is not None and len(names) != 1:
        fail("--replica-id needs exactly one service name: stratus down NAME --replica-id N")
    with api_errors(), state_of(ctx).client() as client:
        if replica_id is not None:
            if not yes:
                typer.confirm(
                    f"Terminating replica {replica_id} of {names[0]!r}. Proceed?", default=True, abort=True
                )
            result = client.terminate_replica(names[0], replica_id, purge=purge)
            typer.echo(sentence(result["message"]))
            return
        if all_:
            names = [s["name"] for s in client.list_services()["services"]]
            if not names:
                typer.echo("No service to terminate.")
                return
        elif any(_is_glob(n) for n in names):  # `down 'llm-*'`, as sky serve down
            known = [s["name"] for s in client.list_services()["services"]]
            matched = {n: [k for k in known if fnmatch.fnmatchcase(k, n)] for n in names}
            missing = [n for n, hits in matched.items() if not hits]
            if missing:
                fail("; ".join(f"no service matches {n!r}" for n in missing) + "; nothing was torn down")
            names = sorted({k for hits in matched.values() for k in hits})
        else:
            found = {s["name"] for s in client.list_services(names)["services"]}
            missing = [n for n in names if n not in found]
            if missing:
                fail("; ".join(f"service {n!r} not found" for n in missing) + "; nothing was torn down")
        if not yes:
            shown = ", ".join(repr(n) for n in names)
            typer.confirm(
                f"Terminating service(s) {shown}{' (purge)' if purge else ''}. Proceed?",
                default=True,
                abort=True,
            )
        errors = 0
        for name in names:
            try:
                result = client.delete_service(name, purge=purge)
                typer.echo(sentence(result["message"]))
            except ApiRequestError as exc:
                typer.echo(f"error: {exc.message}", err=True)
                errors += 1
    if errors:
        raise typer.Exit(1)


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def register(app: typer.Typer) -> None:
    app.command()(with_overrides(up))
    app.command()(with_overrides(update))
    app.command()(status)
    app.command()(down)
