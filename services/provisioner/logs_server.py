"""The provisioner answers replica-log requests (it owns the logs its provider writes).

Local replicas' logs are files under the provider's state directory, kept after the replica
ends, so terminated replicas' logs stay readable. Other providers keep a log only where
``Provider.log_path`` says so, found through the replica's instance id.
"""

from __future__ import annotations

import re
from pathlib import Path

from libs.fleet.state import FleetState
from libs.replica_logs import serve_replica_logs
from libs.runtime.host import ServiceHost

from .clouds.base import Provider
from .clouds.errors import LaunchError
from .clouds.local import LocalProvider
from .clouds.local_layout import check_service_name, replica_paths

_REPLICA_LOG = re.compile(r"replica-(\d+)\.log")


class ProviderLogLocator:
    def __init__(self, provider: Provider, fleet: FleetState | None = None) -> None:
        self.provider = provider
        self.fleet = fleet

    def _local_dir(self, service: str) -> Path | None:
        if not isinstance(self.provider, LocalProvider):
            return None
        try:
            check_service_name(service)
        except LaunchError:
            return None
        return self.provider.state_dir / "logs" / service

    def path(self, service: str, replica_id: int) -> Path | str:
        if isinstance(self.provider, LocalProvider):
            if self._local_dir(service) is None or replica_id < 1:
                return "no such replica log"
            return replica_paths(self.provider.state_dir, service, replica_id).log
        svc = self.fleet.services.get(service) if self.fleet is not None else None
        rep = svc.replicas.get(replica_id) if svc is not None else None
        if rep is None or not rep.instance_id:
            return "no log yet"
        found = self.provider.log_path(rep.instance_id)
        return found if found is not None else f"the {self.provider.cloud} provider keeps no log for it"

    def replica_ids(self, service: str) -> list[int]:
        where = self._local_dir(service)
        if where is None or not where.is_dir():
            return []
        ids = (_REPLICA_LOG.fullmatch(p.name) for p in where.iterdir())
        return sorted(int(m.group(1)) for m in ids if m is not None)


class _FleetLocator(ProviderLogLocator):
    """Reads the host's live fleet on each request (instance ids of non-local replicas)."""

    def __init__(self, provider: Provider, host: ServiceHost) -> None:
        super().__init__(provider)
        self._host = host

    def path(self, service: str, replica_id: int) -> Path | str:
        self.fleet = self._host.fleet.state
        return super().path(service, replica_id)


async def serve_logs(host: ServiceHost, provider: Provider) -> None:
    """Answer on the bus until the host stops."""
    sub = await serve_replica_logs(host.nc, host.bus.prefix, _FleetLocator(provider, host))
    try:
        await host.stop.wait()
    finally:
        await sub.unsubscribe()
