"""Settings every Stratus process reads from its environment (no module-level singletons).

STRATUS_HOME        state directory (logs, replica working copies, embedded servers); ~/.stratus
NATS_URL            NATS with JetStream; set by ``stratus local up`` for the services
DATABASE_URL        Postgres holding the event log
STRATUS_API_URL     where the CLI finds the API; default http://127.0.0.1:8765
STRATUS_BUS_PREFIX  subject prefix / stream name suffix, so several stacks can share a NATS
STRATUS_ROUTER_HOST address the router binds service endpoints on; default 127.0.0.1
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_API_PORT = 8765


def _home_default() -> Path:
    return Path(os.environ.get("STRATUS_HOME") or Path.home() / ".stratus")


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=_home_default)
    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    api_url: str = f"http://127.0.0.1:{DEFAULT_API_PORT}"
    bus_prefix: str = "stratus"
    router_host: str = "127.0.0.1"

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            home=_home_default(),
            nats_url=env.get("NATS_URL", cls.nats_url),
            database_url=env.get("DATABASE_URL", cls.database_url),
            api_url=env.get("STRATUS_API_URL", cls.api_url),
            bus_prefix=env.get("STRATUS_BUS_PREFIX", cls.bus_prefix),
            router_host=env.get("STRATUS_ROUTER_HOST", cls.router_host),
        )

    # Where things live under STRATUS_HOME.
    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def component_log(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    @property
    def provisioner_dir(self) -> Path:
        return self.home / "provisioner"

    def replica_log(self, service: str, replica_id: int) -> Path:
        """The local provider keeps each replica's setup+run output here, after it ends too."""
        return self.provisioner_dir / "logs" / service / f"replica-{replica_id}.log"
