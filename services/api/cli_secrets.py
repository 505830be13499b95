"""``stratus secrets``: the secret rule, and rotating the master key of this machine's stack.

    stratus secrets check NAME[=VALUE]...   which envs the rule treats as secret (and why not)
    stratus secrets rotate-key              re-encrypt every data key under a new master key

``rotate-key`` works where the key file is (``$STRATUS_HOME/secrets.key``) and talks to Postgres
directly: ``DATABASE_URL``, else the local stack's embedded Postgres (``stratus local up``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from libs.runtime.settings import Settings
from libs.secrets import SecretsError, is_secret_env, key_path
from libs.secrets.__main__ import rotate

secrets_app = typer.Typer(no_args_is_help=True, help="Secrets: the rule for env names, master key rotation.")


def local_database_url(settings: Settings) -> str:
    """``DATABASE_URL`` when given, else the embedded Postgres of the local stack."""
    if "DATABASE_URL" in settings.given:
        return settings.database_url
    path = settings.home / "run" / "stack.json"
    try:
        port = int(json.loads(path.read_text())["postgres"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise typer.BadParameter(
            f"no local stack under {settings.home} ({path} unreadable: {exc}); "
            "start it with `stratus local up`, or set DATABASE_URL"
        ) from exc
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


@secrets_app.command("check")
def check(
    envs: Annotated[list[str], typer.Argument(help="NAME or NAME=VALUE (a value can make it secret too).")],
) -> None:
    """Say which envs are kept out of events as secrets (the rule: `python -m pydoc libs.secrets.rules`)."""
    for item in envs:
        name, _, value = item.partition("=")
        verdict = "secret" if is_secret_env(name, value) else "plain"
        typer.echo(f"{name}: {verdict}")


@secrets_app.command("rotate-key")
def rotate_key(
    database_url: Annotated[
        str | None,
        typer.Option(help="Postgres holding the secrets (default: DATABASE_URL or the local stack)."),
    ] = None,
) -> None:
    """Re-encrypt every service's data key under a new master key; the old key is dropped once done."""
    settings = Settings.from_env()
    url = database_url or local_database_url(settings)
    try:
        done = asyncio.run(rotate(url, settings.home))
    except SecretsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"rotated the master key in {key_path(settings.home)}: {done.data_keys} data key(s) re-encrypted, "
        f"{done.migrated_values} older value(s) moved under their data key"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(secrets_app, name="secrets")
