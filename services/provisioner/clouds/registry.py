"""Which providers the provisioner has, and the one it uses: ``CloudRouter`` dispatches by cloud.

``build_providers(settings, checks)`` maps cloud name -> provider: ``local`` always, and each of
aws / gcp / azure whose check (``check.py``) found usable credentials. Each cloud module exposes
``<Cloud>Provider.from_settings(settings)`` (``aws.AwsProvider``, ``gcp.GcpProvider``,
``azure.AzureProvider``); a module that cannot be imported leaves its cloud out, with the reason.

Instance ids: ``CloudRouter`` prefixes a cloud provider's ids with ``"<cloud>:"`` (``aws:i-0abc``)
so ``status`` / ``terminate`` find the provider again after a restart; an id without a known
prefix is the local provider's (as every id recorded before clouds existed).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from libs.events.types import Placement
from libs.fleet.state import ReplicaState, ServiceState
from libs.runtime.settings import Settings

from .base import CloudCheck, Instance, InstanceState, InstanceStatus, LaunchTask, Provider
from .errors import AuthError, LaunchError, ProviderError, TransientError

log = logging.getLogger("stratus.provisioner.clouds")

# cloud -> (module under services.provisioner.clouds, class name)
PROVIDER_CLASSES: dict[str, tuple[str, str]] = {
    "aws": ("aws", "AwsProvider"),
    "gcp": ("gcp", "GcpProvider"),
    "azure": ("azure", "AzureProvider"),
}


def load_provider(cloud: str, settings: Settings) -> Provider:
    """Construct ``cloud``'s provider; ``LaunchError`` says why it cannot be."""
    try:
        module_name, class_name = PROVIDER_CLASSES[cloud]
    except KeyError:
        raise LaunchError(f"unknown cloud {cloud!r}: known are {sorted(PROVIDER_CLASSES)}") from None
    try:
        module = importlib.import_module(f"{__package__}.{module_name}")
    except ImportError as exc:
        raise LaunchError(f"the {cloud} provider cannot be loaded: {exc}") from exc
    cls: Any = getattr(module, class_name, None)
    if cls is None:
        raise LaunchError(f"the {cloud} provider module has no {class_name}")
    provider: Provider = cls.from_settings(settings)
    return provider


def build_providers(settings: Settings, checks: Iterable[CloudCheck]) -> dict[str, Provider]:
    """``local`` plus every enabled cloud whose provider loads (a failure is logged, not raised)."""
    from .local import LocalProvider

    providers: dict[str, Provider] = {
        "local": LocalProvider(settings.provisioner_dir, zone_trace=settings.local_zone_trace)
    }
    for check in checks:
        if not check.enabled:
            continue
        try:
            providers[check.cloud] = load_provider(check.cloud, settings)
        except LaunchError as exc:
            log.warning("cloud %s is enabled but its provider is not: %s", check.cloud, exc)
    return providers


def releasable(svc: ServiceState | None, ended: ReplicaState) -> list[Placement]:
    """Where the service's cloud resources may go now that replica ``ended`` is terminated (pure).

    ``ended``'s placement when it is on a cloud, its service is going down (or already gone from
    the projection) and no other replica of it in that cloud and region is still to terminate;
    else nothing. The provider still checks that no live instance uses what it deletes.
    """
    where = ended.placement
    if where.cloud in ("", "local") or (svc is not None and not svc.down_requested):
        return []
    for other in svc.replicas.values() if svc is not None else ():
        if other.replica_id == ended.replica_id or other.terminated_at is not None:
            continue
        if (other.placement.cloud, other.placement.region) == (where.cloud, where.region):
            return []
    return [where]


async def release_unused(
    provider: Provider, service: str, svc: ServiceState | None, ended: ReplicaState
) -> None:
    """After ``ended``'s termination, release its service's cloud resources once unused.

    Called by the provisioner; a cloud error is logged (the resources stay) and never raised."""
    placements = releasable(svc, ended)
    if not placements:
        return
    try:
        await provider.release(service, placements)
    except ProviderError as exc:
        log.warning("could not release the cloud resources of %s: %s", service, exc)


def split_id(instance_id: str, clouds: Iterable[str]) -> tuple[str, str]:
    """(cloud, the provider's own id) of a ``CloudRouter`` instance id."""
    head, sep, rest = instance_id.partition(":")
    if sep and head in clouds and head != "local":
        return head, rest
    return "local", instance_id


class CloudRouter(Provider):
    """Dispatches each call to the provider of the placement's (or the instance id's) cloud."""

    cloud = "router"

    def __init__(self, providers: Mapping[str, Provider], disabled: Mapping[str, str] | None = None) -> None:
        if "local" not in providers:
            raise ValueError("CloudRouter needs a local provider")
        self.providers = dict(providers)
        # cloud -> why it is not available, for a clear launch failure; None: not checked yet
        self.disabled: dict[str, str] | None = dict(disabled) if disabled is not None else None
        # What the VM itself says beyond its cloud's state (a workload that exited on a VM that
        # still runs): instance id -> status, or None (``cloud_logs.LogMirror.exit_status``).
        self.workload_status: Callable[[str], InstanceStatus | None] = lambda _id: None

    @property
    def local(self) -> Provider:
        return self.providers["local"]

    def provider_for(self, cloud: str) -> Provider:
        """The provider of ``cloud``; TransientError before the first check, AuthError if disabled."""
        if cloud in self.providers:
            return self.providers[cloud]
        if self.disabled is None:
            raise TransientError(f"cloud {cloud!r}: the provisioner has not checked its credentials yet")
        if cloud not in PROVIDER_CLASSES:
            raise LaunchError(f"unknown cloud {cloud!r}: known are local and {', '.join(PROVIDER_CLASSES)}")
        why = self.disabled.get(cloud, "no provider for it in this provisioner")
        raise AuthError(f"cloud {cloud!r} is not enabled: {why} (`stratus check`)")

    def needs_bootstrap_for(self, cloud: str) -> bool:
        provider = self.providers.get(cloud)
        return provider is not None and provider.needs_bootstrap

    def _wrap(self, cloud: str, inst: Instance) -> Instance:
        if cloud == "local":
            return inst
        return msgspec.structs.replace(inst, instance_id=f"{cloud}:{inst.instance_id}")

    def _route(self, instance_id: str) -> tuple[Provider | None, str]:
        cloud, own = split_id(instance_id, self.providers.keys() | PROVIDER_CLASSES.keys())
        return self.providers.get(cloud), own

    async def launch(self, placement: Placement, task: LaunchTask) -> Instance:
        cloud = placement.cloud or "local"
        provider = self.provider_for(cloud)
        if task.num_nodes > 1 and not provider.multi_node:
            raise LaunchError(
                f"num_nodes is {task.num_nodes}: the {cloud} provider launches a replica on one node only"
            )
        return self._wrap(cloud, await provider.launch(placement, task))

    async def terminate(self, instance_id: str, *, grace_seconds: float = 10) -> None:
        provider, own = self._route(instance_id)
        if provider is None:
            raise LaunchError(f"cannot terminate {instance_id!r}: its cloud's provider is not enabled here")
        await provider.terminate(own, grace_seconds=grace_seconds)

    async def status(self, instance_id: str) -> InstanceStatus:
        provider, own = self._route(instance_id)
        if provider is None:
            # Not NOT_FOUND: that would record the replica as exited while the VM may run on.
            return InstanceStatus(
                state=InstanceState.RUNNING, detail="its cloud's provider is not enabled here"
            )
        status = await provider.status(own)
        if status.state == InstanceState.RUNNING:
            return self.workload_status(instance_id) or status
        return status

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        out: list[Instance] = []
        for cloud, provider in self.providers.items():
            out.extend(self._wrap(cloud, i) for i in await provider.list_instances(service))
        return out

    async def release(self, service: str, placements: Sequence[Placement]) -> None:
        """Each enabled cloud of ``placements`` releases what it created there for ``service``."""
        by_cloud: dict[str, list[Placement]] = {}
        for placement in placements:
            by_cloud.setdefault(placement.cloud or "local", []).append(placement)
        for cloud, own in sorted(by_cloud.items()):
            provider = self.providers.get(cloud)
            if provider is not None:
                await provider.release(service, own)

    async def preempt(self, instance_id: str, *, grace_seconds: float = 5.0) -> None:
        provider, own = self._route(instance_id)
        if provider is None:
            raise LaunchError(f"cannot preempt {instance_id!r}: its cloud's provider is not enabled here")
        await provider.preempt(own, grace_seconds=grace_seconds)

    def log_path(self, instance_id: str) -> Path | None:
        provider, own = self._route(instance_id)
        return None if provider is None else provider.log_path(own)

    def log_tail(self, instance_id: str, lines: int = 20) -> str:
        provider, own = self._route(instance_id)
        return "" if provider is None else provider.log_tail(own, lines)

    async def close(self) -> None:
        for provider in self.providers.values():
            await provider.close()
