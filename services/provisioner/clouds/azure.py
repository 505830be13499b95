"""The Azure provider: replicas as VMs through Azure Resource Manager (azure-mgmt-* SDKs).

Layout and names: ``azure_config`` (one resource group and VNet per region) and ``azure_names``
(``<resource group>/<vm>`` ids; tags stratus-service / stratus-replica-id / stratus-version and
more on each VM, so ``list_instances`` rediscovers them). A launch (``azure_launch``) creates an
NSG opening only the service, log and task ports to the router's source range, a NIC (and a static
public IP), and the VM: the placement's size in its region, ``priority=Spot`` with eviction policy
Delete and max price -1 (pay up to on-demand) for spot, the default GPU image or ``image_id``
(``azure_specs``), and the startup script (``startup.render_startup_script``: public values only)
as custom data. Custom data is not shown in the portal but anyone on the VM can read it, which is
why secret envs travel by the one-time bootstrap token instead (``needs_bootstrap``).

A multi-node replica (``num_nodes > 1``) is one VM per node in the region, each with its own
node's startup script (its rank and one-time bootstrap token) and tagged with its rank and head;
their shared NSG also lets the nodes reach each other. The head's id names every node
(``azure_names.vm_names``): ``status`` aggregates them (``node_status``), ``terminate`` deletes
them all, ``list_instances`` lists heads only.

Status (``azure_status``) maps the instance view; an evicted spot VM is PREEMPTED. Terminate
deletes the VM, NIC, IP, NSG and OS disk, each absent one being fine. Errors are translated by
``azure_errors``. The SDK is synchronous: every call runs in a thread.

Credentials: ``DefaultAzureCredential`` (environment, workload/managed identity, ``az login``...)
and the subscription in ``AZURE_SUBSCRIPTION_ID`` (the Azure CLI's convention).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from azure.core.credentials import TokenCredential
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from libs.events.types import Placement
from libs.runtime.settings import Settings

from .azure_clients import ARM_SCOPE, AzureClients
from .azure_config import AzureConfig
from .azure_errors import AUTH_HINT, translate
from .azure_inventory import delete_replica, list_replicas, replica_status
from .azure_launch import NETWORK_TIMEOUT_S, Launcher
from .azure_names import instance_id as instance_id_of
from .azure_names import nodes_of, parse_instance_id
from .base import CloudCheck, Instance, InstanceState, InstanceStatus, LaunchTask, Provider
from .errors import AuthError, InstanceNotFound, LaunchError, ProviderError, TransientError
from .node_status import aggregate_nodes
from .startup import render_startup_script

T = TypeVar("T")
SUBSCRIPTION_ENV = "AZURE_SUBSCRIPTION_ID"
CHECK_HINT = (
    "run `az login` (or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET) and set "
    "AZURE_SUBSCRIPTION_ID to the subscription to launch in"
)


def throwaway_ssh_key() -> str:
    """An OpenSSH public key whose private half is discarded (Azure requires a key; nobody logs in)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode() + " stratus-throwaway"


class AzureProvider(Provider):
    cloud = "azure"
    needs_bootstrap = True
    multi_node = True  # one VM per node, sharing the head's NSG (azure_launch)

    def __init__(
        self,
        subscription_id: str,
        credential: TokenCredential,
        *,
        config: AzureConfig | None = None,
        base_url: str | None = None,
        connection_verify: str | bool = True,
    ) -> None:
        if not subscription_id:
            raise LaunchError(f"no Azure subscription id: {CHECK_HINT}")
        self.subscription_id = subscription_id
        self.config = config or AzureConfig()
        self._credential = credential
        self._owns_credential = False  # from_settings made it, so close() closes it
        self._clients = AzureClients.build(
            subscription_id, credential, self.config, base_url=base_url, connection_verify=connection_verify
        )
        key = self.config.ssh_public_key or throwaway_ssh_key()
        self._launcher = Launcher(self._clients, self.config, key)

    @classmethod
    def from_settings(cls, settings: Settings, *, config: AzureConfig | None = None) -> AzureProvider:
        """With ``DefaultAzureCredential`` and the subscription in ``AZURE_SUBSCRIPTION_ID``.

        LaunchError (what the registry expects of a provider that cannot be built) when the
        subscription is not set or the settings are unusable. Opens no connection: a credential
        that cannot get a token shows at ``check`` and as AuthError at the first call.
        """
        from azure.identity import DefaultAzureCredential

        subscription = os.environ.get(SUBSCRIPTION_ENV, "")
        if not subscription:
            raise LaunchError(f"{SUBSCRIPTION_ENV} is not set: {CHECK_HINT}")
        config = config or AzureConfig.from_settings(settings)
        provider = cls(subscription, DefaultAzureCredential(), config=config)
        provider._owns_credential = True
        return provider

    async def _call(self, doing: str, fn: Callable[..., T], /, *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except ProviderError:
            raise
        except Exception as exc:
            raise translate(exc, doing) from exc

    async def launch(self, placement: Placement, task: LaunchTask) -> Instance:
        # It reads the task's workdir and file mounts: off the event loop too.
        nodes = [task.for_node(rank) for rank in range(task.num_nodes)] if task.num_nodes > 1 else [task]

        def render() -> list[str]:
            return [render_startup_script(n, log_port=self.config.log_port, cloud="azure") for n in nodes]

        scripts = await self._call(f"render the startup script of {task.service}", render)
        return await self._call(
            f"launch {task.service} replica {task.replica_id}",
            self._launcher.launch,
            placement,
            task,
            scripts,
        )

    async def terminate(self, instance_id: str, *, grace_seconds: float = 10) -> None:
        """Delete the VM and what was launched with it; of a multi-node replica's head, every
        node's, the workers first (their NICs hold the head's NSG)."""
        # Azure's delete gives the guest no shutdown signal worth waiting for: the router already
        # drained the replica, so grace_seconds is not used.
        del grace_seconds
        try:
            group, vm = parse_instance_id(instance_id)
        except InstanceNotFound:
            return
        timeout = max(self.config.operation_timeout_s, NETWORK_TIMEOUT_S)
        head, *workers = nodes_of(vm)
        results = await asyncio.gather(
            *(
                self._call(f"terminate {group}/{w}", delete_replica, self._clients, group, w, timeout)
                for w in workers
            ),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:  # the head stays, so terminating it again covers every node
            raise failed[0]
        await self._call(f"terminate {instance_id}", delete_replica, self._clients, group, head, timeout)

    async def release(self, service: str, placements: Sequence[Placement]) -> None:
        """Delete the service's leftover network resources, and each region's resource group
        once nothing but Stratus's VNet is left in it (``azure_release``)."""
        timeout = max(self.config.operation_timeout_s, NETWORK_TIMEOUT_S)
        for region in sorted({p.region for p in placements if p.region}):
            await self._call(
                f"release the resources of {service!r} in {region}",
                self._launcher.release,
                service,
                region,
                timeout,
            )

    async def status(self, instance_id: str) -> InstanceStatus:
        """The VM's state; of a multi-node replica's head, every node's, aggregated (node_status)."""
        try:
            group, vm = parse_instance_id(instance_id)
        except InstanceNotFound as exc:
            return InstanceStatus(state=InstanceState.NOT_FOUND, detail=str(exc))
        vms = nodes_of(vm)
        found = await asyncio.gather(
            *(self._call(f"read VM {group}/{n}", replica_status, self._clients, group, n) for n in vms)
        )
        return aggregate_nodes([(instance_id_of(group, n), st) for n, st in zip(vms, found, strict=True)])

    async def preempt(self, instance_id: str, *, grace_seconds: float = 5.0) -> None:
        """Have Azure evict a spot VM (``simulateEviction``), a real eviction: the guest gets the
        Scheduled Events ``Preempt`` notice and the VM goes (Azure may take some minutes). An
        on-demand VM cannot be evicted: ProviderError."""
        del grace_seconds  # Azure sets the notice period (at least 30 s)
        group, vm = parse_instance_id(instance_id)
        compute = self._clients.compute

        def evict() -> None:
            machine = compute.virtual_machines.get(group, vm)
            if machine.properties is None or machine.properties.priority != "Spot":
                raise LaunchError(f"{instance_id} is not a spot VM: Azure evicts only spot VMs")
            compute.virtual_machines.simulate_eviction(group, vm)

        await self._call(f"simulate the eviction of {instance_id}", evict)

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        return await self._call("list VMs", list_replicas, self._clients, service, self.config.log_port)

    async def check(self) -> CloudCheck:
        """An ARM token from the credential, and one cheap read of the subscription."""

        def probe() -> None:
            self._credential.get_token(ARM_SCOPE)
            next(iter(self._clients.resource.resource_groups.list(top=1)), None)

        try:
            await self._call(f"check subscription {self.subscription_id}", probe)
        except AuthError as exc:
            return CloudCheck(cloud=self.cloud, enabled=False, reason=str(exc), hint=CHECK_HINT)
        except TransientError as exc:
            hint = "check network access to management.azure.com, then `stratus check` again"
            return CloudCheck(cloud=self.cloud, enabled=False, reason=str(exc), hint=hint)
        except ProviderError as exc:
            return CloudCheck(cloud=self.cloud, enabled=False, reason=str(exc), hint=AUTH_HINT)
        return CloudCheck(cloud=self.cloud, enabled=True, reason=f"subscription {self.subscription_id}")

    async def close(self) -> None:
        await asyncio.to_thread(self._clients.close)
        closer = getattr(self._credential, "close", None)
        if self._owns_credential and callable(closer):
            await asyncio.to_thread(closer)
