"""``stratus local up|down|status``: the whole stack on this machine, under one supervisor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from libs.auth import token_file
from libs.runtime.settings import Settings
from libs.telemetry.serve import local_status

local_app = typer.Typer(no_args_is_help=True, help="Run the whole Stratus stack on this machine.")


def _state(home: Path) -> dict[str, object] | None:
    path = home / "run" / "supervisor.json"
    if not path.exists():
        return None
    try:
        data: dict[str, object] = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return data


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def supervisor_pid(home: Path) -> int | None:
    state = _state(home)
    if state is None:
        return None
    pid = state.get("supervisor_pid")
    return pid if isinstance(pid, int) and _alive(pid) else None


def _api_healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for_api(api_url: str, timeout: float, home: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _api_healthy(api_url):
            return
        if supervisor_pid(home) is None and time.monotonic() > deadline - timeout + 5:
            break
        time.sleep(0.3)
    log = home / "logs" / "supervisor.log"
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    typer.echo(f"error: the API did not answer at {api_url} within {timeout:.0f}s.\n"
               f"See the logs in {home / 'logs'}.\n{tail}", err=True)  # fmt: skip
    raise typer.Exit(1)


@local_app.command("up")
def up(
    file: Annotated[
        Path | None, typer.Argument(help="A service YAML to deploy once the stack is up.")
    ] = None,
    name: Annotated[str | None, typer.Option("-n", "--service-name", help="Service name.")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE override (repeatable).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the stack.")] = 180.0,
    instances: Annotated[
        int | None, typer.Option(min=1, help="Instances of each service and of the relay (docs/ha.md).")
    ] = None,
) -> None:
    """Start NATS, Postgres and the six services (if not running), then deploy FILE."""
    settings = Settings.from_env()
    home = settings.home
    if supervisor_pid(home) is None:
        (home / "logs").mkdir(parents=True, exist_ok=True)
        log = open(home / "logs" / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
        child_env = {**os.environ, "STRATUS_HOME": str(home)}
        if instances is not None:
            child_env["STRATUS_INSTANCES"] = str(instances)
        subprocess.Popen(
            [sys.executable, "-m", "libs.runtime.stack"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=child_env,
        )  # fmt: skip
        log.close()
        typer.echo(f"Starting the Stratus stack in {home} ...")
    else:
        typer.echo(f"The Stratus stack is already running in {home}.")
    wait_for_api(settings.api_url, timeout, home)
    typer.echo(f"API ready at {settings.api_url}")
    _say_where_the_token_is(settings)
    if file is not None:
        argv = [sys.executable, "-m", "services.api.cli", "up", str(file), "-y"]
        if name:
            argv += ["-n", name]
        for e in env or []:
            argv += ["--env", e]
        raise typer.Exit(subprocess.call(argv))


def _say_where_the_token_is(settings: Settings) -> None:
    """The API wrote the first admin token at its first start; the CLI reads it from there."""
    path = token_file(settings.home)
    if settings.api_token:
        typer.echo("Using the API token in STRATUS_API_TOKEN.")
    elif path.exists():
        typer.echo(f"Admin token: {path} (mode 0600; the CLI uses it, STRATUS_API_TOKEN overrides it)")
    else:
        typer.echo(
            f"warning: no admin token file at {path}: the API's token table already had tokens "
            "(a database shared with another stack?); set STRATUS_API_TOKEN to one of them",
            err=True,
        )


@local_app.command("down")
def down(timeout: Annotated[float, typer.Option(help="Seconds to wait for a clean stop.")] = 60.0) -> None:
    """Stop the services, every local replica, then NATS and Postgres."""
    settings = Settings.from_env()
    pid = supervisor_pid(settings.home)
    if pid is None:
        typer.echo("The Stratus stack is not running.")
    else:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        typer.echo("Stopped the Stratus stack.")
    stopped = _stop_local_replicas(settings)
    if stopped:
        typer.echo(f"Terminated {stopped} local replica(s).")


def _stop_local_replicas(settings: Settings) -> int:
    """The provisioner's own cleanup, run as a process (the API never imports another service)."""
    if not settings.provisioner_dir.exists():
        return 0
    done = subprocess.run(
        [sys.executable, "-m", "services.provisioner.stop_local"], capture_output=True, text=True,
        env={**os.environ, "STRATUS_HOME": str(settings.home)}, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        typer.echo(f"error: terminating the local replicas failed:\n{done.stderr.strip()}", err=True)
        raise typer.Exit(1)
    return int(done.stdout.strip().splitlines()[-1])


@local_app.command("status")
def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="Components, pids, /metrics URLs and /healthz answers as JSON.")
    ] = False,
) -> None:
    """Show the stack's components, their pids, restarts and health (and where each serves /metrics)."""
    settings = Settings.from_env()
    state = _state(settings.home)
    pid = supervisor_pid(settings.home)
    if state is None or pid is None:
        typer.echo(f"The Stratus stack is not running (home: {settings.home}).")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(local_status(settings, pid, state), indent=2))
        return
    typer.echo(f"Supervisor pid {pid}, home {settings.home}, API {settings.api_url}")
    typer.echo(f"{'COMPONENT':<12} {'PID':<8} {'STATUS':<8} {'RESTARTS':<9} HEALTH")
    for name, info in local_status(settings, pid, state)["components"].items():
        up_, health = "UP" if info["up"] else "DOWN", _health(info["health"])
        typer.echo(f"{name:<12} {info['pid'] or '-'!s:<8} {up_:<8} {info['restarts']!s:<9} {health}")


def _health(health: dict[str, object] | None) -> str:
    """A component's /healthz answer in a few words: ok (lag N), or failing: its problems."""
    if health is None:
        return "-"
    lag = health.get("projection", health.get("relay"))
    lag_text = f" (lag {lag.get('lag')})" if isinstance(lag, dict) else ""
    if health.get("healthy"):
        return f"ok{lag_text}"
    problems = health.get("problems")
    return "failing: " + ("; ".join(map(str, problems)) if isinstance(problems, list) else "?")
