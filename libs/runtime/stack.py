"""The local stack: NATS, Postgres and the Stratus components under one supervisor.

``python -m libs.runtime.stack`` runs in the foreground (``stratus local up`` starts it
detached). NATS and Postgres are the embedded ones unless ``NATS_URL`` / ``DATABASE_URL``
name servers to use. Ports chosen on first start are kept in ``<home>/run/stack.json`` so a
restart finds the same data at the same address. The embedded Postgres commits synchronously: a
kill -9 of it (restarted by the supervisor, crash recovery) loses no committed event.

``STRATUS_INSTANCES=N`` (``stratus local up --instances N``) runs N of each service and of the
relay, named ``scheduler-1`` ... ``scheduler-N`` (just ``scheduler`` when N is 1). Instance i > 1
of the API serves on STRATUS_API_URL's port + i - 1; each router gets its own id (``-i``) and
they share each endpoint's port (SO_REUSEPORT). What makes that safe is in docs/ha.md.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from libs.servers.nats_server import nats_server_binary
from libs.servers.ports import free_port
from libs.servers.postgres_server import PostgresServer

from .host import bus_config
from .settings import Settings
from .supervisor import Component, Supervisor, python_module, supervisor_log_handler

SERVICES = ("api", "scheduler", "provisioner", "prober", "autoscaler", "router")


def _ports(home: Path) -> dict[str, int]:
    path = home / "run" / "stack.json"
    ports: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
    for name in ("nats", "postgres"):
        ports.setdefault(name, free_port())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ports))
    return ports


def build_components(settings: Settings) -> tuple[list[Component], dict[str, str]]:
    """The components to supervise and the environment they share."""
    home = settings.home
    ports = _ports(home)
    components: list[Component] = []
    nats_url = settings.nats_url
    if "NATS_URL" not in settings.given:
        port = ports["nats"]
        nats_url = f"nats://127.0.0.1:{port}"
        argv = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(home / "nats")]
        components.append(Component("nats", argv, ready_port=("127.0.0.1", port)))
    database_url = settings.database_url
    if "DATABASE_URL" not in settings.given:
        pg = PostgresServer(home / "postgres", port=ports["postgres"], crash_safe=True)
        pg.init()
        database_url = pg.url
        components.append(
            Component(
                "postgres", pg.foreground_argv(), ready_port=("127.0.0.1", pg.port), stop_signal=signal.SIGINT
            )
        )
    env = {"NATS_URL": nats_url, "DATABASE_URL": database_url, "STRATUS_HOME": str(home)}
    # The relay publishes where the services consume: the stream and prefix of STRATUS_BUS_PREFIX.
    bus = bus_config(settings)
    relay = python_module("libs.events", "relay", "--stream", bus.stream, "--prefix", bus.prefix)
    n = settings.instances
    for i in range(1, n + 1):
        components.append(Component(_named("relay", i, n), relay, env=dict(env)))
    for name in SERVICES:
        for i in range(1, n + 1):
            components.append(
                Component(
                    _named(name, i, n), python_module(f"services.{name}.main"),
                    env={**env, **_instance_env(settings, name, i, n)},
                )
            )  # fmt: skip
    return components, env


def _named(name: str, i: int, n: int) -> str:
    return name if n == 1 else f"{name}-{i}"


def _instance_env(settings: Settings, service: str, i: int, n: int) -> dict[str, str]:
    """What differs between instances of one service (nothing when there is one)."""
    if n == 1:
        return {}
    out = {"STRATUS_INSTANCES": str(n)}
    if service == "api" and i > 1:
        url = urlsplit(settings.api_url)
        port = (url.port or 80) + i - 1
        out["STRATUS_API_URL"] = urlunsplit((url.scheme, f"{url.hostname}:{port}", url.path, "", ""))
    if service == "router":
        out["STRATUS_ROUTER_ID"] = f"{settings.router_id or 'router-' + socket.gethostname()}-{i}"
    return out


def main() -> None:
    settings = Settings.from_env()
    settings.home.mkdir(parents=True, exist_ok=True)
    handler = supervisor_log_handler(
        settings.component_log("supervisor"), settings.log_max_bytes, settings.log_backups
    )
    logging.basicConfig(level=settings.log_level, handlers=[handler])
    components, env = build_components(settings)
    (settings.home / "run" / "env.json").write_text(json.dumps(env))
    Supervisor(
        settings.home, components, log_max_bytes=settings.log_max_bytes, log_backups=settings.log_backups
    ).run()


if __name__ == "__main__":
    main()
