"""``stratus auth``: API tokens (admin only, but ``whoami``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from ..client import TokenClient
from .common import api_errors, sentence, state_of

auth_app = typer.Typer(no_args_is_help=True, help="API tokens: create, list, revoke (admin tokens only).")


class RoleOpt(StrEnum):
    admin = "admin"
    viewer = "viewer"


@auth_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Who or what uses it; shown in the event log.")],
    role: Annotated[RoleOpt, typer.Option(help="viewer: read only; admin: also change things.")] = (
        RoleOpt.viewer
    ),
) -> None:
    """Create a token and print it (once: only its hash is kept)."""
    with api_errors(), state_of(ctx).client() as client:
        made = TokenClient(client).create(name, role.value)
    typer.echo(f"Created {made['role']} token {made['id']} ({made['name']!r}). It is shown only this once:")
    typer.echo(made["token"])
    typer.echo("Use it with `export STRATUS_API_TOKEN=...`.", err=True)


def _row(t: dict[str, Any]) -> str:
    revoked = t.get("revoked_at") or "-"
    created, by = t["created_at"][:19], t["created_by"] or "-"
    return f"{t['id']:<5} {t['name']:<24} {t['role']:<7} {created:<19}  {by:<20} {revoked}"


@auth_app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("-a", "--all", help="Include revoked tokens.")] = False,
) -> None:
    """The tokens (never their values)."""
    with api_errors(), state_of(ctx).client() as client:
        tokens = TokenClient(client).list(include_revoked=all_)
    typer.echo(f"{'ID':<5} {'NAME':<24} {'ROLE':<7} {'CREATED (UTC)':<19}  {'CREATED BY':<20} REVOKED")
    for t in tokens:
        typer.echo(_row(t))


@auth_app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[
        int, typer.Argument(help="The token's ID (`stratus auth list`).", show_default=False)
    ],
) -> None:
    """Revoke a token: it stops working at once."""
    with api_errors(), state_of(ctx).client() as client:
        gone = TokenClient(client).revoke(token_id)
    typer.echo(sentence(f"revoked token {gone['id']} ({gone['name']!r}, {gone['role']})"))


@auth_app.command("whoami")
def whoami(ctx: typer.Context) -> None:
    """The token the CLI is using: its ID, name and role."""
    with api_errors(), state_of(ctx).client() as client:
        me = TokenClient(client).whoami()
    typer.echo(f"token {me['id']} ({me['name']!r}), role {me['role']}")


def register(app: typer.Typer) -> None:
    app.add_typer(auth_app, name="auth")
