"""What every ``stratus`` command group shares: the CLI state, errors, spec reading, time parsing."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from libs.auth import TokenFileError, read_token_file, token_file
from libs.runtime.settings import Settings
from libs.spec import SpecError, load_spec_file, parse_env_overrides
from libs.spec.local_paths import resolve_local_paths

from ..client import ApiRequestError, ApiUnreachable, StratusClient

SECRET_RULE = (
    "Values under `secrets:`, readiness probe header values, envs with a name part such as TOKEN, SECRET, "
    "PASSWORD, PWD, KEY, APIKEY, CREDENTIALS, AUTH(ORIZATION) or PAT (HF_TOKEN, GITHUB_PAT; not TOKEN_DELAY "
    "or MAX_TOKENS) and values that are URLs with a password are stored encrypted, never in the event log; "
    "`stratus secrets check NAME` tells."
)

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


@dataclass
class CliState:
    api_url: str
    # STRATUS_API_TOKEN, else the local stack's admin token file; None: send no token.
    token: str | None = None

    def client(self) -> StratusClient:
        return StratusClient(self.api_url, token=self.token)


def api_token(settings: Settings) -> str | None:
    """STRATUS_API_TOKEN if set, else the token in STRATUS_HOME/auth/admin.token (if any)."""
    if settings.api_token:
        return settings.api_token
    try:
        return read_token_file(token_file(settings.home))
    except TokenFileError as exc:
        fail(str(exc))


def cli_state(api_url: str | None) -> CliState:
    settings = Settings.from_env()
    return CliState(api_url=api_url or settings.api_url, token=api_token(settings))


def state_of(ctx: typer.Context) -> CliState:
    obj = ctx.find_object(CliState)
    return obj if obj is not None else cli_state(None)


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


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
