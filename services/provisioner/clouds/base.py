"""The provider interface: what the provisioner asks of every cloud.

A provider turns a ``Placement`` plus a ``LaunchTask`` into a running ``Instance`` and answers
questions about it. It keeps no state the provisioner needs beyond what it can rediscover
(``list_instances``), so a restarted provisioner picks up where the last one stopped.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import msgspec

from libs.events.types import Placement

from .errors import ProviderError
from .log_tail import tail_lines


class Bootstrap(msgspec.Struct, frozen=True, kw_only=True):
    """How a cloud instance fetches its secrets at boot.

    ``url`` is the API's ``POST /v1/bootstrap`` endpoint as the instance reaches it; ``token``
    is one-time and expiring (``libs.bootstrap.issue``): dead after its first use or its expiry,
    so it may go into user-data/metadata although secret values may not. The answer carries the
    replica's secret envs and its log token (see ``startup.render_startup_script``).
    """

    url: str
    token: str

    def __repr__(self) -> str:
        return f"Bootstrap(url={self.url!r}, token='***')"


class LaunchTask(msgspec.Struct, frozen=True, kw_only=True):
    """What to run on a replica: the resolved task of one service version."""

    service: str
    replica_id: int
    service_port: int
    version: int = 1
    setup: str | None = None
    run: str | None = None
    # Already merged (spec envs, overrides, secrets): values may be secret, so never log them.
    envs: dict[str, str] = {}
    # A local directory whose copy becomes the replica's working directory.
    workdir: str | None = None
    # Local source path -> destination on the replica. Remote URIs (s3://...) are not copied
    # by the provisioner; a provider that cannot handle them raises LaunchError.
    file_mounts: dict[str, str] = {}
    ports: list[int] = []
    num_gpus: int = 0
    # Names in ``envs`` whose values are secret: a cloud provider must not put those values in
    # user-data/metadata; its startup script fetches them with ``bootstrap`` instead.
    secret_names: list[str] = []
    # None for providers that hand envs over directly (local); required by the cloud providers.
    bootstrap: Bootstrap | None = None
    # ``resources.image_id``: one image for every region, or region -> image. None: the
    # provider's default GPU-ready image for the accelerator.
    image_id: str | dict[str, str] | None = None
    # ``resources.disk_size`` in GB (None: the provider's default).
    disk_size: int | None = None
    # SkyServe's ``num_nodes``: machines per replica (only providers with ``multi_node`` take > 1).
    num_nodes: int = 1
    # Multi-node on a cloud: one one-time bootstrap per node, by rank (0 is the head; its entry is
    # ``bootstrap``). A node's bootstrap answer carries its rank and, once the provisioner has
    # recorded them, every node's IP (SKYPILOT_NODE_IPS). Empty for a single node.
    node_bootstraps: list[Bootstrap] = []
    # The node this task boots (``for_node``): 0 for the head and for single-node replicas.
    node_rank: int = 0

    def for_node(self, rank: int) -> LaunchTask:
        """The task as node ``rank`` of a multi-node replica boots it: its rank, its own bootstrap
        (a provider renders each node's startup script from this)."""
        if not 0 <= rank < self.num_nodes:
            raise ValueError(f"node rank {rank} outside 0..{self.num_nodes - 1}")
        bootstrap = self.node_bootstraps[rank] if self.node_bootstraps else self.bootstrap
        return msgspec.structs.replace(self, node_rank=rank, bootstrap=bootstrap)

    def public_envs(self) -> dict[str, str]:
        """The envs that may appear in cloud metadata (every one not named in ``secret_names``)."""
        secret = set(self.secret_names)
        return {k: v for k, v in self.envs.items() if k not in secret}

    def image_for(self, region: str) -> str | None:
        """The image ``image_id`` names for ``region`` (None: use the provider's default)."""
        if isinstance(self.image_id, dict):
            return self.image_id.get(region)
        return self.image_id

    def __repr__(self) -> str:
        envs = {key: "***" for key in self.envs}
        return (
            f"LaunchTask(service={self.service!r}, replica_id={self.replica_id}, version={self.version}, "
            f"service_port={self.service_port}, setup={self.setup!r}, run={self.run!r}, envs={envs}, "
            f"workdir={self.workdir!r}, file_mounts={self.file_mounts!r}, ports={self.ports!r}, "
            f"num_gpus={self.num_gpus}, secret_names={self.secret_names!r}, bootstrap={self.bootstrap!r}, "
            f"image_id={self.image_id!r}, disk_size={self.disk_size!r}, num_nodes={self.num_nodes}, "
            f"node_rank={self.node_rank}, node_bootstraps={self.node_bootstraps!r})"
        )


class Instance(msgspec.Struct, frozen=True, kw_only=True):
    """A launched replica as its provider knows it."""

    instance_id: str
    service: str
    replica_id: int
    # Where the router and prober reach the service port: "http://10.213.0.2:8080", or
    # "http+unix://<percent-encoded socket path>" for a replica behind a unix-socket bridge.
    url: str
    placement: Placement
    # Provider-specific facts for humans and debugging (pid, namespace, cloud instance id...).
    details: dict[str, str] = {}
    # Multi-node replicas: every node's cloud instance id and private IP, by rank (the head's
    # first; ``instance_id`` is the head's). Empty for a single node. ``status`` and ``terminate``
    # of the head's id cover every node; ``list_instances`` lists heads only.
    node_ids: list[str] = []
    node_ips: list[str] = []


class InstanceState(enum.StrEnum):
    PROVISIONING = "PROVISIONING"  # being created, or running its setup
    RUNNING = "RUNNING"  # the run command is running (readiness is the prober's business)
    EXITED = "EXITED"  # the workload ended on its own; exit_code says how when known
    PREEMPTED = "PREEMPTED"  # the cloud took it back (spot), or `stratus debug preempt`
    TERMINATED = "TERMINATED"  # terminated on request
    NOT_FOUND = "NOT_FOUND"  # the provider knows no such instance


class InstanceStatus(msgspec.Struct, frozen=True, kw_only=True):
    state: InstanceState
    exit_code: int | None = None
    # A human sentence on why, e.g. "setup exited with code 1".
    detail: str = ""


class CloudCheck(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a cloud can be used now (``stratus check``): if not, why and what to do."""

    cloud: str
    enabled: bool
    # Empty when enabled; else e.g. "no AWS credentials found (boto3 credential chain)".
    reason: str = ""
    # What to do about it, e.g. "run `aws configure` or set AWS_ACCESS_KEY_ID/...".
    hint: str = ""


class Provider(abc.ABC):
    """One cloud. Methods are coroutines; none blocks the event loop for long."""

    cloud: ClassVar[str]
    # True for providers whose instances boot from a startup script and so need
    # ``LaunchTask.bootstrap`` (the provisioner issues a one-time token before launching).
    needs_bootstrap: ClassVar[bool] = False
    # True for providers that launch a replica of ``num_nodes > 1`` nodes (libs.spec.launch's
    # MULTI_NODE_CLOUDS must list them: ``up`` refuses the others' multi-node specs).
    multi_node: ClassVar[bool] = False

    @abc.abstractmethod
    async def launch(self, placement: Placement, task: LaunchTask) -> Instance:
        """Start an instance running ``task``; return once it is started (not ready)."""

    @abc.abstractmethod
    async def terminate(self, instance_id: str, *, grace_seconds: float = 10) -> None:
        """Stop and delete the instance. Idempotent: an unknown or gone instance is not an error."""

    @abc.abstractmethod
    async def status(self, instance_id: str) -> InstanceStatus:
        """What the instance is doing now (NOT_FOUND rather than an error for unknown ids)."""

    @abc.abstractmethod
    async def list_instances(self, service: str | None = None) -> list[Instance]:
        """Instances not yet terminated, so a restarted provisioner rediscovers them."""

    async def release(self, service: str, placements: Sequence[Placement]) -> None:
        """Delete what this provider created for ``service`` where ``placements`` put it
        (security groups, firewall rules, network resources) that no live instance of the service
        uses any more. Only resources Stratus created and tagged for the service are touched;
        idempotent, an already-gone resource is fine. The provisioner calls it once a service
        that is going down has terminated a replica. Default: nothing to release."""
        del service, placements

    async def check(self) -> CloudCheck:
        """Whether this provider can launch now (credentials found and accepted); cheap."""
        return CloudCheck(cloud=self.cloud, enabled=True)

    async def close(self) -> None:
        """Release clients and connections (the provisioner calls it on shutdown)."""
        return None

    async def preempt(self, instance_id: str, *, grace_seconds: float = 5.0) -> None:
        """Act out a preemption (debugging and fault injection); real clouds cannot."""
        raise ProviderError(f"the {self.cloud} provider cannot simulate a preemption of {instance_id!r}")

    def log_path(self, instance_id: str) -> Path | None:
        """The file holding the instance's setup and run output, if this provider keeps one."""
        return None

    def log_tail(self, instance_id: str, lines: int = 20) -> str:
        """The last ``lines`` lines of the instance's log ("" when there is none)."""
        path = self.log_path(instance_id)
        return "" if path is None else tail_lines(path, lines)
