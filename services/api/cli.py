"""The ``stratus`` command line: a client of the HTTP API, with SkyServe's habits."""

from __future__ import annotations

import typer

from .cli_spec import spec_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Stratus: serve AI models across regions and clouds.")
app.add_typer(spec_app, name="spec")


def main() -> None:
    app()
