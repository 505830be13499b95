"""``stratus spec ...``: check a service YAML locally, without a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from libs.spec import (
    SpecError,
    describe_resources,
    describe_service,
    launch_issues,
    load_spec_file,
    parse_env_overrides,
    spec_to_dict,
)

spec_app = typer.Typer(no_args_is_help=True, help="Validate service YAML files.")


@spec_app.callback()
def _group() -> None:
    """Validate service YAML files."""
    # A callback keeps `check` a subcommand even while it is the only one.


@spec_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The service YAML to check.", show_default=False)],
    env: Annotated[
        list[str] | None,
        typer.Option("--env", help="Set or override an env (KEY=VALUE); repeatable.", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the normalized spec as JSON.")] = False,
) -> None:
    """Parse and validate FILE; exit 1 and list every problem if it is invalid."""
    try:
        spec = load_spec_file(file, env_overrides=parse_env_overrides(env or []))
    except SpecError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    # Valid, but `up` may refuse it where the spec can be placed (which clouds are enabled is the
    # server's to say): warn now rather than surprise at `up`.
    for issue in launch_issues(spec):
        typer.echo(f"warning: {issue.path}: {issue.message} (`up` refuses this where it applies)", err=True)
    if as_json:
        # Secrets are redacted: this output ends up in terminals, logs and CI artifacts.
        typer.echo(json.dumps(spec_to_dict(spec), indent=2))
        return
    typer.echo(f"OK: {describe_service(spec, spec.name or file.stem)}")
    typer.echo(f"    {describe_resources(spec)}")
