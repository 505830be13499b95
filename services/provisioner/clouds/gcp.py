"""The ``gcp`` provider: replicas are Compute Engine VMs (google-cloud-compute, REST transport).

A launch makes sure the service's firewall rule exists (gcp_firewall), inserts a VM built by
gcp_request (labels stratus-service / stratus-replica-id / stratus-version, the service's
network tag, the startup script in metadata ``startup-script``), and waits, bounded, for the
insert Operation: capacity and quota errors mostly arrive there, not on the insert call.
Instance ids are ``<zone>/<name>``. The SDK blocks, so every call runs in ``asyncio.to_thread``.

A multi-node replica (``num_nodes > 1``) is one VM per node in the placement's zone, inserted
together, each with its own node's startup script (its rank and one-time bootstrap token),
labelled with its rank and its head's name, and named so that the head's id names every node
(``gcp_names.node_names``); a second firewall rule opens the service's nodes to each other. If
any node fails, every node is deleted and the lowest rank's error is raised. ``status`` and
``terminate`` of the head cover every node; ``list_instances`` lists heads only.

Credentials: Application Default Credentials (``google.auth.default``) unless given; the project
from them or GOOGLE_CLOUD_PROJECT. Tests pass ``api_endpoint`` (a fake REST server) and
``AnonymousCredentials``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import google.auth
import google.auth.credentials
import google.auth.exceptions
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.cloud import compute_v1

from libs.events.types import Placement
from libs.runtime.settings import Settings

from . import gcp_names
from .base import CloudCheck, Instance, InstanceState, InstanceStatus, LaunchTask, Provider
from .errors import AuthError, InstanceNotFound, LaunchError, ProviderError, TransientError
from .gcp_config import GcpConfig
from .gcp_errors import translate
from .gcp_firewall import ensure_nodes_rule, ensure_rule, release_rule
from .gcp_instances import address, facts, heads, private_address, to_instance, with_nodes
from .gcp_operations import wait_zone
from .gcp_request import build_instance, check_placement
from .gcp_status import INTERRUPTION_OPERATIONS, derive_status
from .node_status import aggregate_nodes
from .startup import render_startup_script

T = TypeVar("T")
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
CHECK_HINT = (
    "run `gcloud auth application-default login` and `gcloud config set project <id>`, or set "
    "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file with Compute Admin rights"
)
_CALL_TIMEOUT_S = 60.0
_ADDRESS_POLL_S = 2.0


class GcpProvider(Provider):
    cloud = "gcp"
    needs_bootstrap = True
    multi_node = True  # one VM per node, named and labelled by rank (gcp_names)

    def __init__(
        self,
        project: str,
        credentials: google.auth.credentials.Credentials | None = None,
        *,
        api_endpoint: str | None = None,
        config: GcpConfig | None = None,
    ) -> None:
        if not project:
            raise AuthError(f"no GCP project given: {CHECK_HINT}")
        self.project = project
        self.config = config or GcpConfig()
        options = ClientOptions(api_endpoint=api_endpoint) if api_endpoint else None
        kwargs: dict[str, Any] = {"credentials": credentials, "transport": "rest", "client_options": options}
        self._instances = compute_v1.InstancesClient(**kwargs)
        self._zone_ops = compute_v1.ZoneOperationsClient(**kwargs)
        self._global_ops = compute_v1.GlobalOperationsClient(**kwargs)
        self._firewalls = compute_v1.FirewallsClient(**kwargs)
        # Ids this provider asked GCP to delete: reported TERMINATED while GCP still shows them.
        self._deleting: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings, *, config: GcpConfig | None = None) -> GcpProvider:
        """With Application Default Credentials and their project (GOOGLE_CLOUD_PROJECT wins).

        LaunchError (what the registry expects of a provider that cannot be built) when there
        are no credentials or no project.
        """
        try:
            credentials, project = google.auth.default(scopes=SCOPES)
        except google.auth.exceptions.GoogleAuthError as exc:
            raise LaunchError(f"no Google credentials: {exc}; {CHECK_HINT}") from exc
        if not project:
            raise LaunchError(f"Google credentials found but no project: {CHECK_HINT}")
        return cls(project, credentials, config=config or GcpConfig.from_settings(settings))

    async def _call(self, doing: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, timeout=_CALL_TIMEOUT_S, **kwargs)
        except ProviderError:
            raise
        except Exception as exc:
            raise translate(exc, doing) from exc

    # --- launch -----------------------------------------------------------------------------

    async def launch(self, placement: Placement, task: LaunchTask) -> Instance:
        check_placement(placement)
        self.config.ingress_ranges()  # refuse before any cloud call when none is set
        zone, count = placement.zone, task.num_nodes
        names = gcp_names.node_names(task.service, task.replica_id, count)
        head = names[0] if count > 1 else None
        bodies = []
        for rank, name in enumerate(names):
            node = task.for_node(rank) if count > 1 else task
            script = render_startup_script(node, log_port=self.config.log_port, cloud="gcp")
            bodies.append(
                build_instance(
                    placement, node, name=name, startup_script=script, config=self.config, head=head
                )
            )
        try:
            await asyncio.to_thread(
                ensure_rule, self._firewalls, self._global_ops, self.project, task, self.config
            )
            if count > 1:
                await asyncio.to_thread(
                    ensure_nodes_rule,
                    self._firewalls,
                    self._global_ops,
                    self.project,
                    task.service,
                    self.config,
                )
        except ProviderError:
            raise
        except Exception as exc:
            raise translate(exc, f"firewall rule of service {task.service!r}") from exc
        if count == 1:
            await self._insert(placement, bodies[0])
            return await self._started(placement, names[0])
        try:
            results = await asyncio.gather(
                *(self._insert(placement, body) for body in bodies), return_exceptions=True
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:  # the lowest rank's error, as a single node would raise it
                raise failed[0]
            nodes = [await self._wait_for_address(zone, name, keep=True) for name in names]
            found = await self._started(placement, names[0], nodes[0])
            ips = {gcp_names.instance_id(zone, inst.name): private_address(inst) or "" for inst in nodes}
            if not all(ips.values()):
                raise TransientError(f"GCP gave a node of {zone}/{names[0]} no VPC address")
        except BaseException:
            # Created nodes are deleted, even on cancellation: a worker nobody lists would be lost.
            await asyncio.shield(asyncio.gather(*(self._delete_quietly(zone, n) for n in names)))
            raise
        return with_nodes(found, ips)

    async def _insert(self, placement: Placement, body: compute_v1.Instance) -> None:
        zone, name = placement.zone, body.name
        doing = f"insert instance {name} ({placement.instance_type}) in {zone}"
        try:
            op = await self._call(
                doing, self._instances.insert_unary, project=self.project, zone=zone, instance_resource=body
            )
        except TransientError:
            # A timeout or 5xx may come after GCP accepted the insert: do not leave that VM behind.
            await self._delete_quietly(zone, name)
            raise
        try:
            await asyncio.to_thread(
                wait_zone, self._zone_ops, self.project, zone, op,
                timeout_s=self.config.operation_timeout_s, doing=doing,
            )  # fmt: skip
        except TransientError:
            # The VM may still come up: delete it rather than leak a VM nobody tracks.
            await self._delete_quietly(zone, name)
            raise

    async def _started(
        self, placement: Placement, name: str, inst: compute_v1.Instance | None = None
    ) -> Instance:
        zone = placement.zone
        if inst is None:
            inst = await self._wait_for_address(zone, name)
        found = to_instance(inst, self.config, placement)
        if found is None or not found.url:
            await self._delete_quietly(zone, name)
            raise TransientError(f"GCP instance {zone}/{name} came up without the facts Stratus set on it")
        return found

    async def _wait_for_address(self, zone: str, name: str, *, keep: bool = False) -> compute_v1.Instance:
        """The instance once it has its address; on timeout it is deleted unless ``keep``."""
        deadline = time.monotonic() + self.config.address_timeout_s
        while True:
            inst = await self._call(
                f"get instance {zone}/{name}",
                self._instances.get,
                project=self.project,
                zone=zone,
                instance=name,
            )
            if address(inst, self.config) is not None:
                return inst
            if time.monotonic() >= deadline:
                if not keep:
                    await self._delete_quietly(zone, name)
                raise TransientError(
                    f"GCP instance {zone}/{name} has no {self.config.address} address after "
                    f"{self.config.address_timeout_s:.0f}s"
                )
            await asyncio.sleep(_ADDRESS_POLL_S)  # polling the cloud: no event to wait on

    async def _delete_quietly(self, zone: str, name: str) -> None:
        # Best effort: list_instances still finds it by its labels.
        with contextlib.suppress(ProviderError):
            await self._delete(zone, name, wait=False)

    # --- terminate --------------------------------------------------------------------------

    async def _delete(self, zone: str, name: str, *, wait: bool) -> None:
        key = gcp_names.instance_id(zone, name)
        doing = f"delete instance {key}"
        try:
            op = await asyncio.to_thread(
                self._instances.delete_unary, project=self.project, zone=zone, instance=name,
                timeout=_CALL_TIMEOUT_S,
            )  # fmt: skip
        except gexc.NotFound:
            self._deleting.discard(key)
            return
        except Exception as exc:
            raise translate(exc, doing) from exc
        self._deleting.add(key)
        if wait:
            try:
                await asyncio.to_thread(
                    wait_zone, self._zone_ops, self.project, zone, op,
                    timeout_s=self.config.operation_timeout_s, doing=doing,
                )  # fmt: skip
            except ProviderError as exc:
                if "RESOURCE_NOT_FOUND" not in str(exc):
                    raise

    async def terminate(self, instance_id: str, *, grace_seconds: float = 10) -> None:
        """Delete the VM, or every node of a multi-node replica (GCP gives the guest its own
        shutdown window); a gone VM is fine."""
        try:
            zone, name = gcp_names.parse_instance_id(instance_id)
        except InstanceNotFound:
            return  # never one of ours: nothing to delete
        names = gcp_names.nodes_of(name)
        if len(names) == 1:
            await self._delete(zone, name, wait=True)
            return
        results = await asyncio.gather(
            *(self._delete(zone, n, wait=True) for n in names), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:  # every node was asked; the first error says what to retry
            raise failed[0]

    # --- status and rediscovery -------------------------------------------------------------

    async def _operations_on(self, zone: str, inst: compute_v1.Instance) -> list[str]:
        """The operation types on record for ``inst`` (zone operations are kept for a while)."""
        request = compute_v1.ListZoneOperationsRequest(
            project=self.project, zone=zone, filter=f'targetId = "{inst.id}"', max_results=50
        )

        def kinds() -> list[str]:  # iterating may fetch further pages: stay in the thread
            return [op.operation_type for op in self._zone_ops.list(request=request, timeout=_CALL_TIMEOUT_S)]

        try:
            return await asyncio.to_thread(kinds)
        except Exception as exc:
            raise translate(exc, f"list operations of {zone}/{inst.name}") from exc

    async def status(self, instance_id: str) -> InstanceStatus:
        """The VM's state; of a multi-node replica's head, every node's, aggregated (node_status)."""
        try:
            zone, name = gcp_names.parse_instance_id(instance_id)
        except InstanceNotFound as exc:
            return InstanceStatus(state=InstanceState.NOT_FOUND, detail=str(exc))
        names = gcp_names.nodes_of(name)
        if len(names) == 1:
            return await self._node_status(zone, name)
        found = await asyncio.gather(*(self._node_status(zone, n) for n in names))
        return aggregate_nodes(
            [(gcp_names.instance_id(zone, n), st) for n, st in zip(names, found, strict=True)]
        )

    async def _node_status(self, zone: str, name: str) -> InstanceStatus:
        instance_id = gcp_names.instance_id(zone, name)
        try:
            inst = await asyncio.to_thread(
                self._instances.get, project=self.project, zone=zone, instance=name, timeout=_CALL_TIMEOUT_S
            )
        except gexc.NotFound:
            if instance_id in self._deleting:
                return InstanceStatus(state=InstanceState.TERMINATED, detail="deleted")
            return InstanceStatus(
                state=InstanceState.NOT_FOUND, detail=f"GCP knows no instance {instance_id}"
            )
        except Exception as exc:
            raise translate(exc, f"get instance {instance_id}") from exc
        deleting = instance_id in self._deleting
        interruption = ""
        if not deleting and inst.status in ("STOPPING", "TERMINATED", "STOPPED"):
            kinds = await self._operations_on(zone, inst)
            # A delete on record: Stratus is deleting it (this provider may have restarted since).
            deleting = "delete" in kinds
            interruption = next((kind for kind in kinds if kind in INTERRUPTION_OPERATIONS), "")
        return derive_status(facts(inst, interruption=interruption, deleting=deleting))

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        request = compute_v1.AggregatedListInstancesRequest(
            project=self.project, filter=gcp_names.service_filter(service)
        )
        pager = await self._call("list instances", self._instances.aggregated_list, request=request)

        def collect() -> list[Instance]:
            listed = [inst for _zone, scoped in pager for inst in scoped.instances]
            return [
                found
                for found in heads(listed, self.config)
                if found.instance_id not in self._deleting and (service is None or found.service == service)
            ]

        try:
            return await asyncio.to_thread(collect)  # later pages are fetched while iterating
        except Exception as exc:
            raise translate(exc, "list instances") from exc

    async def release(self, service: str, placements: Sequence[Placement]) -> None:
        """Delete the service's firewall rule (one per project) once no VM carries its tag."""
        del placements  # the rule is global
        try:
            await asyncio.to_thread(
                release_rule, self._firewalls, self._global_ops, self._instances, self.project, service
            )
        except ProviderError:
            raise
        except Exception as exc:
            raise translate(exc, f"release the firewall rule of service {service!r}") from exc

    # --- check and close --------------------------------------------------------------------

    async def check(self) -> CloudCheck:
        """Whether the project answers with these credentials (one cheap list call)."""
        try:
            request = compute_v1.AggregatedListInstancesRequest(
                project=self.project, filter=gcp_names.service_filter(None), max_results=1
            )
            await self._call("list instances", self._instances.aggregated_list, request=request)
        except ProviderError as exc:
            hint = CHECK_HINT if exc.kind == "auth" else "check network access to compute.googleapis.com"
            return CloudCheck(cloud=self.cloud, enabled=False, reason=str(exc), hint=hint)
        return CloudCheck(cloud=self.cloud, enabled=True, reason=f"project {self.project}")

    async def close(self) -> None:
        for client in (self._instances, self._zone_ops, self._global_ops, self._firewalls):
            await asyncio.to_thread(client.transport.close)
