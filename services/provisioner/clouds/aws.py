"""The AWS provider: one EC2 instance per replica, booted by its user-data startup script.

Launch: the placement's instance type in its region and zone (a catalog zone ID such as
``use1-az1`` is mapped to its name), spot as a one-time request that terminates on interruption,
the task's ``image_id`` or the newest default AMI (``images.py``), a root volume of
``disk_size`` GB, IMDSv2 only, no key pair. The service's security group opens the service
port, the log port and the ports the user asked for to the ingress CIDR alone
(``aws_network``). User data is ``startup.render_startup_script`` gzipped (no secret values:
the VM fetches them with its one-time bootstrap token). Tags ``stratus:service``,
``stratus:replica-id``, ``stratus:version`` and ``stratus:port`` let ``list_instances``
rediscover instances after a restart. ``ClientToken`` makes a repeated launch of the same
replica and placement return the first instance instead of a second one.

A multi-node replica (``num_nodes > 1``) is that many instances in the same zone, group and
subnet, each booted with its own node's script (``task.for_node(rank)``: its one-time token) and
tagged with its rank; the group lets the nodes reach each other on any port. The head is the
replica: its id is the instance id, ``status`` folds every node's state in, ``terminate`` ends
them all, ``list_instances`` lists heads only (``aws_nodes``). If a node cannot be created (no
capacity for the second one...) those already created are terminated and the error stands.

Instance ids are ``<region>/<ec2 id>``. boto3 blocks, so every call runs in a thread.
Endpoints and credentials come from boto3's own chain (``AWS_PROFILE``, ``AWS_ENDPOINT_URL``...);
``endpoint_url`` overrides it (tests point it at moto).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import boto3
import botocore.config
import msgspec

from libs.events.types import Placement
from libs.runtime.settings import Settings

from .aws_errors import BOTO_ERRORS, error_code, translate
from .aws_images import Image, describe_image, find_default_image
from .aws_network import check_cidr, default_vpc, ensure_group, wanted_rules
from .aws_nodes import describe, group_nodes, replica_status, terminate_ids, terminate_replica
from .aws_release import release_groups
from .aws_requests import (
    ADDRESS_WAIT_SECONDS,
    LIVE_STATES,
    TAG_NODE_RANK,
    TAG_PORT,
    TAG_REPLICA,
    TAG_SERVICE,
    TAG_VERSION,
    run_request,
    split_instance_id,
    tags_of,
)
from .base import CloudCheck, Instance, InstanceState, InstanceStatus, LaunchTask, Provider
from .errors import CapacityError, InstanceNotFound, LaunchError, ProviderError
from .images import aws_default_image
from .startup import DEFAULT_LOG_PORT, encode_user_data, render_startup_script

log = logging.getLogger("stratus.provisioner.aws")
T = TypeVar("T")


class AwsProvider(Provider):
    cloud = "aws"
    needs_bootstrap = True
    multi_node = True

    def __init__(
        self,
        *,
        address: str = "public",
        ingress_cidr: str = "",
        log_port: int = DEFAULT_LOG_PORT,
        regions: list[str] | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = 3,
        address_wait_seconds: float = ADDRESS_WAIT_SECONDS,
        session: boto3.Session | None = None,
    ) -> None:
        if address not in ("public", "private"):
            raise ValueError(f"address must be public or private, not {address!r}")
        self.address = address
        self.ingress_cidr = check_cidr(ingress_cidr) if ingress_cidr else ""
        self.log_port = log_port
        self.regions = regions or []
        self.endpoint_url = endpoint_url
        self.address_wait_seconds = address_wait_seconds
        self._config = botocore.config.Config(
            retries={"max_attempts": max_attempts, "mode": "standard"}, connect_timeout=10, read_timeout=60
        )
        # One session per provider (they are not thread-safe; ``_lock`` guards it); loading its
        # service models is the slow part of the first client, so a caller may share one.
        self._session = session or boto3.Session()
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()  # boto3 sessions are not thread-safe; clients are
        self._zones: dict[str, dict[str, str]] = {}  # region -> zone id -> zone name
        self._images: dict[tuple[str, int], Image] = {}
        self._group_locks: dict[tuple[str, str], asyncio.Lock] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> AwsProvider:
        regions = [r.strip() for r in settings.aws_regions.split(",") if r.strip()]
        return cls(
            address=settings.cloud_address, ingress_cidr=settings.cloud_ingress_cidr,
            log_port=settings.cloud_log_port, regions=regions,
        )  # fmt: skip

    # ------------------------------------------------------------------ plumbing

    def client(self, service: str, region: str) -> Any:
        with self._lock:
            key = (service, region)
            if key not in self._clients:
                self._clients[key] = self._session.client(
                    service, region_name=region, endpoint_url=self.endpoint_url, config=self._config
                )
            return self._clients[key]

    async def _call(self, doing: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except BOTO_ERRORS as exc:
            raise translate(exc, doing) from exc

    # ------------------------------------------------------------------ launch

    async def _zone_name(self, region: str, zone: str) -> str:
        """A zone name for ``zone`` (a name such as us-east-1a, or a zone ID such as use1-az1)."""
        if not zone or zone.startswith(region):
            return zone
        if region not in self._zones:
            ec2 = self.client("ec2", region)
            found = await self._call(f"list the zones of {region}", lambda: ec2.describe_availability_zones())
            self._zones[region] = {str(z["ZoneId"]): str(z["ZoneName"]) for z in found["AvailabilityZones"]}
        try:
            return self._zones[region][zone]
        except KeyError:
            # Not offered to this account (e.g. a Local Zone it has not opted in to): a capacity
            # failure, so the scheduler blocks this location and fails over, not a permanent error.
            raise CapacityError(
                f"zone {zone!r} is not a zone of {region} this account can use "
                f"(known: {sorted(self._zones[region])}; Local Zones need an opt-in)"
            ) from None

    async def _image(self, region: str, task: LaunchTask) -> Image:
        ec2 = self.client("ec2", region)
        given = task.image_for(region)
        if given:
            return await self._call(f"describe image {given}", lambda: describe_image(ec2, given))
        key = (region, 1 if task.num_gpus else 0)
        if key not in self._images:
            query = aws_default_image(task.num_gpus)
            self._images[key] = await self._call(
                f"find the default image in {region}", lambda: find_default_image(ec2, query)
            )
        return self._images[key]

    async def _security_group(self, region: str, task: LaunchTask) -> str:
        ec2 = self.client("ec2", region)
        vpc = await self._call(f"find the default VPC of {region}", lambda: default_vpc(ec2))
        cidr = self.ingress_cidr
        if not cidr:
            if self.address == "public":
                raise LaunchError(
                    "set STRATUS_CLOUD_INGRESS_CIDR to the router's public address range "
                    "(e.g. 203.0.113.7/32) before launching on AWS with public addresses: "
                    "the service port is opened to it alone"
                )
            cidr = str(vpc["CidrBlock"])
        want = wanted_rules({task.service_port, self.log_port, *task.ports}, cidr)
        lock = self._group_locks.setdefault((region, task.service), asyncio.Lock())
        nodes = task.num_nodes > 1
        async with lock:
            return await self._call(
                f"set up the security group of {task.service!r} in {region}",
                lambda: ensure_group(ec2, task.service, str(vpc["VpcId"]), want, between_nodes=nodes),
            )

    async def launch(self, placement: Placement, task: LaunchTask) -> Instance:
        region = placement.region
        if not region or region == "local":
            raise LaunchError(f"an AWS placement needs a region, got {region!r}")
        if not placement.instance_type:
            raise LaunchError("an AWS placement needs an instance_type")
        if task.bootstrap is None:
            raise LaunchError("an AWS launch needs a bootstrap token (the provisioner issues one)")
        if task.num_nodes > 1 and len(task.node_bootstraps) != task.num_nodes:
            raise LaunchError(f"a launch of {task.num_nodes} nodes needs a bootstrap token per node")
        nodes = [task.for_node(rank) for rank in range(task.num_nodes)]
        scripts = [
            await asyncio.to_thread(render_startup_script, node, log_port=self.log_port, cloud="aws")
            for node in nodes
        ]  # all of them before any instance exists: a script too big launches nothing
        zone = await self._zone_name(region, placement.zone)
        image = await self._image(region, task)
        group_id = await self._security_group(region, task)
        where = f"{placement.instance_type} in {zone or region}{' (spot)' if placement.use_spot else ''}"
        ids: list[str] = []
        try:
            for node, script in zip(nodes, scripts, strict=True):
                req = run_request(placement, node, zone, image, group_id, encode_user_data(script, "aws"),
                                  head=ids[0] if ids else "")  # fmt: skip
                ids.append(await self._run(region, req, node, where))
            log.info("launched %s replica %s as %s/%s (%s, image %s)", task.service, task.replica_id, region,
                     ",".join(ids), where, image.image_id)  # fmt: skip
            descs = [await self._wait_for_address(region, i, private=rank > 0) for rank, i in enumerate(ids)]
        except ProviderError:
            await self._cleanup(region, ids)
            raise
        head = self._instance(region, descs[0], placement)
        if len(descs) == 1:
            return head
        node_ips = [str(d.get("PrivateIpAddress") or "") for d in descs]
        return msgspec.structs.replace(head, node_ids=ids, node_ips=node_ips)

    async def _cleanup(self, region: str, ids: list[str]) -> None:
        """Terminate the nodes a failed launch created (a failure here is logged: the launch's
        error is the one that matters)."""
        try:
            await self._call(f"terminate {ids}", lambda: terminate_ids(self.client("ec2", region), ids))
        except ProviderError as exc:
            log.warning("could not terminate %s after a failed launch: %s", ids, exc)

    async def _run(self, region: str, req: dict[str, Any], task: LaunchTask, where: str) -> str:
        """RunInstances; a repeat of a launch that already happened returns that instance's id.

        A repeat (a redelivered message, a restart mid-launch) reuses the ClientToken with new
        user data (a new bootstrap token), which EC2 answers with IdempotentParameterMismatch.
        """
        ec2 = self.client("ec2", region)
        try:
            started = await asyncio.to_thread(lambda: ec2.run_instances(**req))
            return str(started["Instances"][0]["InstanceId"])
        except BOTO_ERRORS as exc:
            if error_code(exc) != "IdempotentParameterMismatch":
                raise translate(exc, f"run {where}") from exc
            found = await self._find_replica(region, task)
            if found is None:
                raise translate(exc, f"run {where}") from exc
            log.info("%s replica %s was launched already: %s", task.service, task.replica_id, found)
            return found

    async def _find_replica(self, region: str, task: LaunchTask) -> str | None:
        ec2 = self.client("ec2", region)
        filters = [
            {"Name": "instance-state-name", "Values": LIVE_STATES},
            {"Name": f"tag:{TAG_SERVICE}", "Values": [task.service]},
            {"Name": f"tag:{TAG_REPLICA}", "Values": [str(task.replica_id)]},
            {"Name": f"tag:{TAG_VERSION}", "Values": [str(task.version)]},
        ]
        if task.num_nodes > 1:
            filters.append({"Name": f"tag:{TAG_NODE_RANK}", "Values": [str(task.node_rank)]})
        found = await self._call(f"find {task.service} replica {task.replica_id}",
                                 lambda: ec2.describe_instances(Filters=filters))  # fmt: skip
        ids = [
            str(i["InstanceId"]) for r in found.get("Reservations") or [] for i in r.get("Instances") or []
        ]
        return ids[0] if ids else None

    async def _wait_for_address(self, region: str, ec2_id: str, *, private: bool = False) -> dict[str, Any]:
        """The instance's description once it has the address we use (a worker: its private one;
        bounded)."""
        deadline = time.monotonic() + self.address_wait_seconds
        delay = 0.2
        while True:
            desc = await self._describe(region, ec2_id)
            if desc is None:
                raise LaunchError(f"EC2 instance {ec2_id} vanished right after launch")
            if desc.get("PrivateIpAddress") if private else self._address_of(desc):
                return desc
            state = str(desc.get("State", {}).get("Name", ""))
            if state not in ("pending", "running"):
                raise LaunchError(f"EC2 instance {ec2_id} went {state} before it had an address")
            if time.monotonic() >= deadline:
                raise LaunchError(
                    f"EC2 instance {ec2_id} got no {self.address} address in "
                    f"{self.address_wait_seconds:.0f} s "
                    "(does the default subnet assign public IPs? else use STRATUS_CLOUD_ADDRESS=private)"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _address_of(self, desc: dict[str, Any]) -> str:
        return str(desc.get("PublicIpAddress" if self.address == "public" else "PrivateIpAddress") or "")

    def _instance(self, region: str, desc: dict[str, Any], placement: Placement | None = None) -> Instance:
        tags = tags_of(desc)
        ip = self._address_of(desc)
        zone = str(desc.get("Placement", {}).get("AvailabilityZone", ""))
        if placement is None:
            placement = Placement(
                cloud="aws", region=region, zone=zone, instance_type=str(desc.get("InstanceType", "")),
                use_spot=desc.get("InstanceLifecycle") == "spot",
            )  # fmt: skip
        return Instance(
            instance_id=f"{region}/{desc['InstanceId']}",
            service=tags.get(TAG_SERVICE, ""),
            replica_id=int(tags.get(TAG_REPLICA, "0") or 0),
            url=f"http://{ip}:{tags.get(TAG_PORT, '8080')}" if ip else "",
            placement=placement,
            details={
                "ec2_instance_id": str(desc["InstanceId"]),
                "zone": zone,
                "image_id": str(desc.get("ImageId", "")),
                "lifecycle": str(desc.get("InstanceLifecycle") or "on-demand"),
                "version": tags.get(TAG_VERSION, ""),
                "log_url": f"http://{ip}:{self.log_port}" if ip else "",
            },
        )

    # ------------------------------------------------------------------ status, list, terminate

    async def _describe(self, region: str, ec2_id: str) -> dict[str, Any] | None:
        ec2 = self.client("ec2", region)
        return await self._call(f"describe {ec2_id}", lambda: describe(ec2, ec2_id))

    async def status(self, instance_id: str) -> InstanceStatus:
        try:
            region, ec2_id = split_instance_id(instance_id)
        except InstanceNotFound as exc:
            return InstanceStatus(state=InstanceState.NOT_FOUND, detail=str(exc))
        ec2 = self.client("ec2", region)
        return await self._call(f"describe {ec2_id}", lambda: replica_status(ec2, ec2_id))

    async def _all_regions(self) -> list[str]:
        if self.regions:
            return self.regions
        ec2 = self.client("ec2", self._session.region_name or "us-east-1")
        found = await self._call("list the regions", lambda: ec2.describe_regions())
        self.regions = sorted(str(r["RegionName"]) for r in found.get("Regions") or [])
        return self.regions

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        filters = [{"Name": "instance-state-name", "Values": LIVE_STATES}]
        if service is None:
            filters.append({"Name": "tag-key", "Values": [TAG_SERVICE]})
        else:
            filters.append({"Name": f"tag:{TAG_SERVICE}", "Values": [service]})
        out: list[Instance] = []
        for region in await self._all_regions():
            ec2 = self.client("ec2", region)
            pages = await self._call(
                f"list instances in {region}",
                lambda ec2=ec2: list(ec2.get_paginator("describe_instances").paginate(Filters=filters)),  # type: ignore[misc]
            )
            descs = [
                d for page in pages for r in page.get("Reservations") or [] for d in r.get("Instances") or []
            ]
            for head, workers in group_nodes(descs):
                inst = self._instance(region, head)
                if workers:
                    nodes = [head, *workers]
                    inst = msgspec.structs.replace(
                        inst, node_ids=[str(d["InstanceId"]) for d in nodes],
                        node_ips=[str(d.get("PrivateIpAddress") or "") for d in nodes],
                    )  # fmt: skip
                out.append(inst)
        return out

    async def terminate(self, instance_id: str, *, grace_seconds: float = 10) -> None:
        try:
            region, ec2_id = split_instance_id(instance_id)
        except InstanceNotFound:
            return  # nothing of ours: idempotent
        ec2 = self.client("ec2", region)
        await self._call(f"terminate {ec2_id}", lambda: terminate_replica(ec2, ec2_id))

    async def release(self, service: str, placements: Sequence[Placement]) -> None:
        """Delete the service's security group in each region once no instance uses it."""
        for region in sorted({p.region for p in placements if p.region and p.region != "local"}):
            async with self._group_locks.setdefault((region, service), asyncio.Lock()):
                await release_groups(self._call, self.client("ec2", region), service, region)

    async def check(self) -> CloudCheck:
        sts = self.client("sts", self._session.region_name or "us-east-1")
        try:
            ident = await self._call("check the credentials", lambda: sts.get_caller_identity())
        except ProviderError as exc:
            return CloudCheck(cloud="aws", enabled=False, reason=str(exc), hint="see `stratus check`")
        return CloudCheck(cloud="aws", enabled=True, reason=f"account {ident.get('Account', '?')}")
