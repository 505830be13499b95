"""The ``stratus`` command line: a client of the HTTP API, with SkyServe's habits.

    stratus up FILE [-n NAME] [--env K=V] [-y]          plan, deploy, wait for the endpoint
    stratus status [NAMES] [--endpoint] [-v] [--json]   the services and replicas tables
    stratus down NAMES|--all [--purge] [--replica-id N] [-y]
    stratus logs NAME [REPLICA_ID] | --controller | --load-balancer   [--follow/--no-follow]
    stratus logs --component scheduler
    stratus events [--service S] [--type T] [--since 10m] [--follow] [--json]
    stratus update NAME FILE [--mode rolling|blue_green]
    stratus debug preempt NAME REPLICA_ID
    stratus auth create --role viewer|admin --name NAME | list | revoke ID | whoami
    stratus spec check FILE;  stratus local up|down|status

One module per command group (``serve``, ``logs``, ``events``, ``debug``, ``auth``; ``common`` holds what
they share). Groups that live beside this package (``services/api/cli_*.py``, listed in
``EXTRA_GROUPS``) each export ``register(app)`` and are wired in when present.

Errors go to stderr with a non-zero exit status. ``STRATUS_API_URL`` (or ``--api-url``) says
where the API is (default http://127.0.0.1:8765); ``STRATUS_API_TOKEN`` is the bearer token
(default: the local stack's admin token in ``STRATUS_HOME/auth/admin.token``).
"""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from ..cli_spec import spec_app
from ..local_cmd import local_app
from . import auth, debug, events, logs, serve
from .common import cli_state, parse_when

__all__ = ["app", "main", "parse_when"]

# Command groups in sibling modules, each with ``register(app: typer.Typer) -> None``.
EXTRA_GROUPS = (
    "services.api.cli_catalog",
    "services.api.cli_check",
    "services.api.cli_keys",
    "services.api.cli_secrets",
    "services.api.cli_ops",
)

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Stratus: serve AI models across regions and clouds."
)


@app.callback()
def _root(
    ctx: typer.Context,
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", envvar="STRATUS_API_URL", help="The Stratus API.", show_default=False),
    ] = None,
) -> None:
    """Stratus: serve AI models across regions and clouds (SkyServe's YAML and habits)."""
    ctx.obj = cli_state(api_url)


def _register_extras(target: typer.Typer) -> None:
    for module_name in EXTRA_GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # the module exists but something it imports does not
                raise
            continue
        module.register(target)


serve.register(app)
auth.register(app)
logs.register(app)
events.register(app)
debug.register(app)
app.add_typer(spec_app, name="spec")
app.add_typer(local_app, name="local")
_register_extras(app)


def main() -> None:
    app()
