"""The ``stratus`` command line: a client of the HTTP API, with SkyServe's habits.

    stratus up FILE [-n NAME] [--env K=V] [-y]          plan, deploy, wait for the endpoint
    stratus status [NAMES] [--endpoint] [-v] [--json]   the services and replicas tables
    stratus down NAMES|--all [--purge] [--replica-id N] [-y]
    stratus logs NAME [REPLICA_ID] | --controller | --load-balancer   [--follow/--no-follow]
    stratus logs --component scheduler
    stratus events [--service S] [--type T] [--since 10m] [--follow] [--json]
    stratus update NAME FILE [--mode rolling|blue_green]
    stratus debug preempt NAME REPLICA_ID

Errors go to stderr with a non-zero exit status. ``STRATUS_API_URL`` (or ``--api-url``) says
where the API is (default http://127.0.0.1:8765).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from libs.runtime.settings import Settings
from libs.spec import SpecError, load_spec_file, parse_env_overrides
from libs.spec.local_paths import resolve_local_paths

from . import render
from .cli_spec import spec_app
from .client import ApiRequestError, ApiUnreachable, StratusClient
from .local_cmd import local_app

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Stratus: serve AI models across regions and clouds."
)
app.add_typer(spec_app, name="spec")
debug_app = typer.Typer(no_args_is_help=True, help="Debugging tools (fault injection).")
app.add_typer(debug_app, name="debug")
# `stratus local up|down|status` lives in local_cmd.py.
app.add_typer(local_app, name="local")

SECRET_RULE = (
    "Values under `secrets:` and envs whose NAME contains TOKEN, SECRET, PASSWORD, PASSWD, KEY or CREDENTIAL "
    "are stored encrypted, never in the event log."
)
FAILED_SERVICE_STATUSES = frozenset({"FAILED", "FAILED_CLEANUP", "TERMINATED", "SHUTTING_DOWN"})


class UpdateMode(StrEnum):
    rolling = "rolling"
    blue_green = "blue_green"


@dataclass
class CliState:
    api_url: str

    def client(self) -> StratusClient:
        return StratusClient(self.api_url)


@app.callback()
def _root(
    ctx: typer.Context,
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", envvar="STRATUS_API_URL", help="The Stratus API.", show_default=False),
    ] = None,
) -> None:
    """Stratus: serve AI models across regions and clouds (SkyServe's YAML and habits)."""
    ctx.obj = CliState(api_url=api_url or Settings.from_env().api_url)


def _state(ctx: typer.Context) -> CliState:
    obj = ctx.find_object(CliState)
    return obj if obj is not None else CliState(api_url=Settings.from_env().api_url)


# --------------------------------------------------------------------------- helpers


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def api_errors() -> Iterator[None]:
    """API and connection failures become a message on stderr and exit status 1."""
    try:
        yield
    except ApiUnreachable as exc:
        fail(str(exc))
    except ApiRequestError as exc:
        fail(exc.message)


def resolve_env(items: list[str] | None) -> dict[str, str]:
    """``--env K=V``, or ``--env K`` to pass K from this shell's environment (as SkyPilot does)."""
    resolved = []
    for item in items or []:
        if "=" not in item and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", item):
            value = os.environ.get(item)
            if value is None:
                fail(f"--env {item}: {item} is not set in your environment; pass --env {item}=VALUE")
            item = f"{item}={value}"
        resolved.append(item)
    try:
        return parse_env_overrides(resolved)
    except SpecError as exc:
        fail(str(exc))


def read_spec(file: Path, env: dict[str, str]) -> tuple[str, str | None]:
    """Validate the YAML here (errors name the file, field and line); returns its text and name."""
    try:
        spec = load_spec_file(file, env_overrides=env)
    except SpecError as exc:
        fail(str(exc))
    # Relative workdir / file_mounts mean "from here", as with SkyPilot: send absolute paths.
    return resolve_local_paths(file.read_text(encoding="utf-8"), Path.cwd()), spec.name


def default_name(file: Path) -> str:
    """The file's stem as a service name (``hello-sky-serve.yaml`` -> ``hello-sky-serve``)."""
    name = re.sub(r"[^-_.a-zA-Z0-9]+", "-", file.stem).strip("-_.")
    if not name or not name[0].isalpha():
        name = f"service-{name}" if name else "service"
    return name[:63].rstrip("-_.")


def show_plan(plan: dict[str, Any], verb: str) -> None:
    typer.echo(f"{verb} service {plan['name']!r} (version {plan['version']}):")
    for line in plan.get("summary", []):
        typer.echo(f"  {line}")


def parse_when(text: str, now: datetime) -> datetime:
    """``30s``, ``10m``, ``2h``, ``1d`` (ago) or an ISO 8601 time (UTC if no zone)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now - timedelta(seconds=float(m.group(1)) * unit)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(
            f"cannot read the time {text!r}: use 30s, 10m, 2h, 1d "
            "or an ISO 8601 time like 2024-05-01T12:00:00Z"
        )
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# --------------------------------------------------------------------------- up / update


EnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--env",
        help="KEY=VALUE (or KEY, taken from your environment) to set or override an env; "
        "repeatable. " + SECRET_RULE,
        show_default=False,
    ),
]
YesOpt = Annotated[bool, typer.Option("-y", "--yes", help="Skip the confirmation prompt.")]


@app.command()
def up(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The service YAML.", show_default=False)],
    service_name: Annotated[
        str | None,
        typer.Option(
            "-n", "--service-name", help="Service name (default: the YAML's name, else the file's stem)."
        ),
    ] = None,
    env: EnvOpt = None,
    yes: YesOpt = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the endpoint to be READY.")] = 1800.0,
    detach: Annotated[bool, typer.Option("--detach", help="Do not wait for READY.")] = False,
    poll_interval: Annotated[float, typer.Option(hidden=True)] = 1.0,
) -> None:
    """Deploy a service: show the plan, then follow it until its endpoint is READY or it failed."""
    overrides = resolve_env(env)
    text, yaml_name = read_spec(file, overrides)
    name = service_name or yaml_name or default_name(file)
    with api_errors(), _state(ctx).client() as client:
        plan = client.create_service(yaml_text=text, name=name, env=overrides, dry_run=True)
        show_plan(plan, "Deploying")
        if not yes:
            typer.confirm("Proceed?", default=True, abort=True)
        plan = client.create_service(yaml_text=text, name=plan["name"], env=overrides, dry_run=False)
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
                typer.echo(f"Service {name!r} is READY.\nEndpoint: {svc['endpoint']}")
                return
            if status in FAILED_SERVICE_STATUSES:
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


@app.command()
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
    env: EnvOpt = None,
    yes: YesOpt = False,
) -> None:
    """Update a service to a new version of its YAML."""
    overrides = resolve_env(env)
    text, _ = read_spec(file, overrides)
    with api_errors(), _state(ctx).client() as client:
        plan = client.update_service(
            service_name, yaml_text=text, env=overrides, mode=mode.value, dry_run=True
        )
        show_plan(plan, "Updating")
        if not yes:
            typer.confirm("Proceed?", default=True, abort=True)
        plan = client.update_service(
            service_name, yaml_text=text, env=overrides, mode=mode.value, dry_run=False
        )
        typer.echo(
            f"Update of {service_name!r} to version {plan['version']} requested ({mode.value}). "
            f"`stratus status {service_name}` shows its progress."
        )


# --------------------------------------------------------------------------- status


@app.command()
def status(
    ctx: typer.Context,
    service_names: Annotated[
        list[str] | None, typer.Argument(help="Services to show (default: all).")
    ] = None,
    endpoint: Annotated[bool, typer.Option("--endpoint", help="Print only the service's endpoint.")] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Also policy, scaling and versions.")
    ] = False,
    all_: Annotated[bool, typer.Option("-a", "--all", help="Include terminated services.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Show services and their replicas (as `sky serve status`)."""
    names = list(service_names or [])
    if endpoint and len(names) != 1:
        fail("--endpoint needs exactly one service name: stratus status --endpoint NAME")
    with api_errors(), _state(ctx).client() as client:
        if endpoint:
            svc = client.get_service(names[0])
            if not svc.get("endpoint"):
                fail(f"service {names[0]!r} has no endpoint yet (status {svc['status']})")
            typer.echo(render.endpoint_text(svc["endpoint"]))
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


# --------------------------------------------------------------------------- down


@app.command()
def down(
    ctx: typer.Context,
    service_names: Annotated[list[str] | None, typer.Argument(help="Services to tear down.")] = None,
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
    with api_errors(), _state(ctx).client() as client:
        if replica_id is not None:
            if not yes:
                typer.confirm(
                    f"Terminating replica {replica_id} of {names[0]!r}. Proceed?", default=True, abort=True
                )
            result = client.terminate_replica(names[0], replica_id, purge=purge)
            typer.echo(_sentence(result["message"]))
            return
        if all_:
            names = [s["name"] for s in client.list_services()["services"]]
            if not names:
                typer.echo("No service to terminate.")
                return
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
                typer.echo(_sentence(result["message"]))
            except ApiRequestError as exc:
                typer.echo(f"error: {exc.message}", err=True)
                errors += 1
    if errors:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- logs


@app.command()
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
            help="A Stratus component's log: api, scheduler, provisioner, prober, "
            "autoscaler, router, relay, supervisor.",
            show_default=False,
        ),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Keep streaming new lines.")] = True,
    tail: Annotated[int | None, typer.Option("--tail", help="Start this many lines before the end.")] = None,
) -> None:
    """Stream a replica's logs, or the controller's or load balancer's (as `sky serve logs`)."""
    with api_errors(), _state(ctx).client() as client:
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
                _write(chunk)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


# --------------------------------------------------------------------------- events


@app.command()
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
) -> None:
    """Show the recorded events (the audit trail), newest last."""
    now = datetime.now(UTC)
    params: dict[str, Any] = {"service": service, "type": type_ or None}
    if since:
        params["since"] = parse_when(since, now).isoformat()
    if until:
        params["until"] = parse_when(until, now).isoformat()

    def show(event: dict[str, Any]) -> None:
        typer.echo(json.dumps(event, sort_keys=True) if as_json else render.event_line(event))

    with api_errors(), _state(ctx).client() as client:
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


# --------------------------------------------------------------------------- debug


@debug_app.command("preempt")
def preempt(
    ctx: typer.Context,
    service_name: Annotated[str, typer.Argument(help="The service.", show_default=False)],
    replica_id: Annotated[int, typer.Argument(help="The replica to preempt.", show_default=False)],
) -> None:
    """Record a PreemptionRequested: the provider then acts as if the cloud preempted the replica."""
    with api_errors(), _state(ctx).client() as client:
        result = client.preempt_replica(service_name, replica_id)
    typer.echo(_sentence(result["message"]))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
