"""``up``/``update`` flags that override the YAML, as ``sky serve up/update`` takes them:
``--cloud --region --zone --gpus --cpus --memory --use-spot/--no-use-spot --ports``,
``--env-file`` (a dotenv file; ``--env`` wins over it) and ``--secret KEY[=VALUE]``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from libs.spec import SpecError, apply_overrides, load_spec, parse_env_file, read_spec_text
from libs.spec.local_paths import resolve_local_paths

from .common import fail, resolve_env

CloudOpt = Annotated[
    str | None, typer.Option("--cloud", help="Override resources.cloud.", show_default=False)
]
RegionOpt = Annotated[
    str | None, typer.Option("--region", help="Override resources.region.", show_default=False)
]
ZoneOpt = Annotated[str | None, typer.Option("--zone", help="Override resources.zone.", show_default=False)]
GpusOpt = Annotated[
    str | None,
    typer.Option("--gpus", help="Override resources.accelerators, e.g. A100:2.", show_default=False),
]
CpusOpt = Annotated[
    str | None, typer.Option("--cpus", help="Override resources.cpus (4 or 4+).", show_default=False)
]
MemoryOpt = Annotated[
    str | None,
    typer.Option("--memory", help="Override resources.memory in GB (16 or 16+).", show_default=False),
]
SpotOpt = Annotated[
    bool | None,
    typer.Option("--use-spot/--no-use-spot", help="Override resources.use_spot.", show_default=False),
]
PortsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ports", help="Override resources.ports (repeatable; 8080 or 8080-8090).", show_default=False
    ),
]
EnvFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--env-file", help="A dotenv file of KEY=VALUE envs (--env wins over it).", show_default=False
    ),
]
SecretOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--secret",
        help="KEY=VALUE (or KEY, from your environment): a secret env, stored encrypted; repeatable.",
        show_default=False,
    ),
]
AsyncOpt = Annotated[bool, typer.Option("--async", help="Return once requested; do not wait.")]


@dataclass
class TaskOverrides:
    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    gpus: str | None = None
    cpus: str | None = None
    memory: str | None = None
    use_spot: bool | None = None
    ports: list[str] | None = None
    env: list[str] | None = None
    env_file: Path | None = None
    secret: list[str] | None = None
    resources: dict[str, Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        ports: list[int | str] | None = None
        if self.ports:
            ports = [int(p) if re.fullmatch(r"\d+", p) else p for p in self.ports]
        self.resources = {
            "cloud": self.cloud, "region": self.region, "zone": self.zone, "accelerators": self.gpus,
            "cpus": self.cpus, "memory": self.memory, "use_spot": self.use_spot, "ports": ports,
        }  # fmt: skip

    def envs(self) -> dict[str, str]:
        """--env-file, then --env, then --secret (later ones win)."""
        out: dict[str, str] = {}
        if self.env_file is not None:
            try:
                out.update(parse_env_file(self.env_file.read_text(encoding="utf-8"), str(self.env_file)))
            except OSError as exc:
                fail(f"--env-file {self.env_file}: {exc.strerror}")
            except SpecError as exc:
                fail(str(exc))
        out.update(resolve_env(self.env))
        out.update(self.secrets())
        return out

    def secrets(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.secret or []:
            name, sep, value = item.partition("=")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                fail(f"--secret {item.split('=')[0]!r}: not a valid environment variable name")
            if not sep:
                from_env = os.environ.get(name)
                if from_env is None:
                    fail(
                        f"--secret {name}: {name} is not set in your environment; pass --secret {name}=VALUE"
                    )
                value = from_env
            out[name] = value
        return out


def prepare(file: Path, overrides: TaskOverrides) -> tuple[str, str | None, dict[str, str]]:
    """The YAML text to send (overrides applied, local paths absolute), its name, the envs."""
    env = overrides.envs()
    try:
        original = read_spec_text(file)
        text = apply_overrides(
            original, resources=overrides.resources, secrets=overrides.secrets(), source=str(file)
        )
        spec = load_spec(text, env_overrides=env, source=str(file))
    except SpecError as exc:
        fail(str(exc))
    return resolve_local_paths(text, Path.cwd()), spec.name, env
