"""``stratus spec ...`` commands (placeholder until libs.spec lands)."""

from __future__ import annotations

import typer

spec_app = typer.Typer(no_args_is_help=True, help="Validate service YAML files.")
