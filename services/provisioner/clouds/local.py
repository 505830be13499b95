"""The ``local`` provider: replicas are process trees on this machine.

Each replica runs its task's setup then run under a launcher (local_launcher.py) in a session
of its own, with a private copy of its workdir, and in a network namespace of its own so that
any number of replicas can listen on the same port (see local_isolation for the two modes).
The provider is not the replicas' parent: they outlive it, and a new provider on the same
state_dir rediscovers them from their records. One provider per state_dir at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from libs.events.types import Placement

from .base import Instance, InstanceState, InstanceStatus, LaunchTask, Provider
from .errors import InstanceNotFound, LaunchError, ProviderError, TransientError
from .local_env import inherited_env, replica_env
from .local_files import CopyPlan, materialize, plan_copies
from .local_fs import append_log, check_private_dir, read_int, read_text
from .local_isolation import IsolationRequest, choose_isolation, netns_unavailable
from .local_layout import (
    ReplicaPaths,
    check_replica_id,
    check_service_name,
    new_instance_id,
    parse_instance_id,
    replica_key,
    replica_paths,
    socket_path,
    unix_socket_url,
)
from .local_netns import DEFAULT_SUBNET, NetnsManager, NetnsNames, netns_inode, netns_names
from .local_nodes import check_num_nodes, cluster_ips, create_workers, failed_worker, node_paths
from .local_probe import find_ip_binary, netns_facts, userns_facts
from .local_process import create_time, launcher_alive, stop_members
from .local_records import InstanceRecord, Mode, ProcessRecord, iter_records, load_record, save_record
from .local_spawn import spawn_launcher, write_launch_files
from .local_status import derive_status

if TYPE_CHECKING:
    from .local_zones import LocalZones

_LIVE = (InstanceState.RUNNING, InstanceState.PROVISIONING)


class LocalProvider(Provider):
    cloud = "local"
    multi_node = True  # netns mode: one namespace per node (local_nodes)

    def __init__(
        self,
        state_dir: Path,
        *,
        isolation: IsolationRequest = "auto",
        subnet: str = DEFAULT_SUBNET,
        base_env: Mapping[str, str] | None = None,
        spawn_timeout: float = 30.0,
        zone_trace: Path | None = None,
    ) -> None:
        """``base_env``: what replicas inherit (default: a safe part of this process's
        environment, see local_env). ``subnet``: where netns mode takes each replica's /30.
        ``zone_trace``: simulated spot zones whose capacity follows that file, when it exists
        (``libs.placement.spot_local_zones``: launches above capacity fail, spot instances above
        it are preempted)."""
        self.state_dir = Path(state_dir).absolute()
        self.isolation: IsolationRequest = isolation
        self._network = ipaddress.IPv4Network(subnet)
        self._base_env = dict(base_env) if base_env is not None else inherited_env(os.environ)
        self._spawn_timeout = spawn_timeout
        self._python = sys.executable
        self._mode: Mode | None = None
        self._mode_lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._launching: set[str] = set()
        self._netns_manager: NetnsManager | None = None
        self._zones: LocalZones | None = None
        if zone_trace is not None:  # imported only then: it needs the catalog and placement libs
            from .local_zones import LocalZones

            self._zones = LocalZones(zone_trace, self.state_dir / "replicas")

    # ------------------------------------------------------------------ the Provider interface

    async def launch(self, placement: Placement, task: LaunchTask) -> Instance:
        check_service_name(task.service)
        check_replica_id(task.replica_id)
        plan = plan_copies(task)
        key = replica_key(task.service, task.replica_id)
        paths = replica_paths(self.state_dir, task.service, task.replica_id)
        async with self._lock(key):
            existing = await asyncio.to_thread(load_record, paths.record)
            if existing is not None and existing.lifecycle != "terminated":
                if existing.lifecycle == "started" and await asyncio.to_thread(
                    launcher_alive, existing.pid, existing.pid_started_at
                ):
                    return self._instance(existing)  # a redelivered launch: it runs already
                await self._stop_and_release(existing, grace_seconds=0)  # remains of a dead launch
            if self._zones is not None:
                await asyncio.to_thread(self._zones.check_launch, placement)
            mode = await self.isolation_mode()
            check_num_nodes(task.num_nodes, mode)
            self._launching.add(key)
            try:
                return await self._launch(mode, placement, task, plan, paths)
            finally:
                self._launching.discard(key)

    async def terminate(self, instance_id: str, *, grace_seconds: float = 10) -> None:
        found = self._find(instance_id)
        if found is None:
            return
        key, paths = found
        async with self._lock(key):
            record = await asyncio.to_thread(load_record, paths.record)
            if record is None or record.instance_id != instance_id or record.lifecycle == "terminated":
                return
            await self._stop_and_release(record, grace_seconds=grace_seconds)
            for rank in range(record.num_nodes):  # the logs stay
                await asyncio.to_thread(
                    shutil.rmtree, node_paths(paths, record.replica_id, rank).workdir, True
                )
            record.lifecycle = "terminated"
            await asyncio.to_thread(save_record, paths.record, record)

    async def status(self, instance_id: str) -> InstanceStatus:
        found = self._find(instance_id)
        if found is None:
            return derive_status(None, launching_here=False, launcher_alive=False, phase=None, exit_code=None)
        key, paths = found
        await self.enforce_zones()
        return await asyncio.to_thread(self._observe, instance_id, key, paths)

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        records = await asyncio.to_thread(lambda: list(iter_records(self.state_dir / "replicas")))
        return [
            self._instance(r)
            for r in records
            if r.lifecycle != "terminated" and (service is None or r.service == service)
        ]

    async def preempt(self, instance_id: str, *, grace_seconds: float = 5.0) -> None:
        """Like a spot reclaim: the workload gets SIGTERM, then SIGKILL, and its network goes."""
        found = self._find(instance_id)
        if found is None:
            raise InstanceNotFound(instance_id)
        key, paths = found
        async with self._lock(key):
            record = await asyncio.to_thread(load_record, paths.record)
            if record is None or record.instance_id != instance_id or record.lifecycle == "terminated":
                raise InstanceNotFound(instance_id, "no such instance, or it was terminated")
            if record.lifecycle == "preempted":
                return
            # Recorded first: while the processes die, status must say PREEMPTED, not EXITED.
            record.lifecycle = "preempted"
            await asyncio.to_thread(save_record, paths.record, record)
            await self._stop_and_release(record, grace_seconds=grace_seconds)

    async def enforce_zones(self) -> list[str]:
        """Preempt the spot instances above their simulated zone's capacity now (local_zones)."""
        if self._zones is None:
            return []
        victims = await asyncio.to_thread(self._zones.over_capacity)
        for instance_id in victims:
            with contextlib.suppress(InstanceNotFound):
                await self.preempt(instance_id, grace_seconds=1.0)
        return victims

    def log_path(self, instance_id: str) -> Path | None:
        parsed = parse_instance_id(instance_id)
        if parsed is None:
            return None
        path = replica_paths(self.state_dir, *parsed).log
        return path if path.exists() else None

    # ------------------------------------------------------------------ isolation

    async def isolation_mode(self) -> Mode:
        """The isolation replicas get here, probed once (LaunchError says why none works)."""
        async with self._mode_lock:
            if self._mode is None:
                netns_reason = (
                    netns_unavailable(netns_facts()) if self.isolation != "userns" else "not chosen"
                )
                userns = None
                if self.isolation == "userns" or (self.isolation == "auto" and netns_reason is not None):
                    userns = await userns_facts(self._python)
                self._mode = choose_isolation(self.isolation, netns_reason, userns)
            return self._mode

    def _netns(self) -> NetnsManager:
        if self._netns_manager is None:
            ip = find_ip_binary()
            if ip is None:
                raise LaunchError("the `ip` command (iproute2) is needed for network namespaces")
            self._netns_manager = NetnsManager(ip, self._network)
        return self._netns_manager

    # ------------------------------------------------------------------ launching

    async def _launch(
        self, mode: Mode, placement: Placement, task: LaunchTask, plan: CopyPlan, paths: ReplicaPaths
    ) -> Instance:
        instance_id = new_instance_id(task.service, task.replica_id, secrets.token_hex(4))
        record = InstanceRecord(
            instance_id=instance_id,
            service=task.service,
            replica_id=task.replica_id,
            version=task.version,
            placement=placement,
            mode=mode,
            service_port=task.service_port,
            launched_at=time.time(),
            num_nodes=task.num_nodes,
        )
        if mode == "netns":
            names = netns_names(self.state_dir, task.service, task.replica_id)
            record.netns, record.veth_host, record.veth_ns = names.netns, names.veth_host, names.veth_ns
        else:
            fallback = Path(
                os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir(), f"stratus-{os.geteuid()}"
            )
            record.socket = str(socket_path(self.state_dir, task.service, task.replica_id, fallback))
        try:
            # Saved before anything exists, so a crash from here on leaves a record to clean up.
            await asyncio.to_thread(self._prepare_dirs, paths, record)
            await asyncio.to_thread(materialize, plan, paths.workdir)
            if mode == "netns":
                addrs = await self._netns().create(names)
                record.host_ip, record.ns_ip = addrs.host_ip, addrs.ns_ip
                record.url = f"http://{addrs.ns_ip}:{task.service_port}"
                if task.num_nodes > 1:
                    await create_workers(self._netns(), self.state_dir, record, paths.record)
            else:
                record.url = unix_socket_url(Path(record.socket))
            for rank in range(task.num_nodes):  # the head first, then each worker (local_nodes)
                await self._spawn_node(mode, task, plan, paths, record, rank)
            record.lifecycle = "started"
            await asyncio.to_thread(save_record, paths.record, record)
        except BaseException as exc:
            await self._abandon(record, paths, exc)
            if isinstance(exc, OSError):
                raise LaunchError(f"launching {instance_id} failed: {exc}") from exc
            raise
        return self._instance(record)

    async def _spawn_node(
        self,
        mode: Mode,
        task: LaunchTask,
        plan: CopyPlan,
        paths: ReplicaPaths,
        record: InstanceRecord,
        rank: int,
    ) -> None:
        node = record.workers[rank - 1] if rank else None
        process: ProcessRecord = node if node is not None else record
        npaths = node_paths(paths, task.replica_id, rank)
        if node is not None:
            await asyncio.to_thread(materialize, plan, npaths.workdir)
        await asyncio.to_thread(write_launch_files, npaths, record, task, self._spawn_timeout)
        ips = cluster_ips(task.num_nodes) if task.num_nodes > 1 else None
        env = replica_env(
            self._base_env, task, instance_id=record.instance_id, node_ip=record.ns_ip or "127.0.0.1",
            rank=rank, node_ips=ips,
        )  # fmt: skip
        prefix = [self._netns().ip, "netns", "exec", process.netns] if mode == "netns" else []
        pid, inode = await spawn_launcher(self._python, npaths, env, prefix, self._spawn_timeout)
        started_at = await asyncio.to_thread(create_time, pid)
        process.pid, process.netns_inode, process.pid_started_at = pid, inode, started_at
        await asyncio.to_thread(save_record, paths.record, record)

    async def _abandon(self, record: InstanceRecord, paths: ReplicaPaths, exc: BaseException) -> None:
        """Undo a failed launch, leaving a terminated record and a line in the log."""
        try:
            await asyncio.to_thread(append_log, paths.log, f"launch of {record.instance_id} failed: {exc}")
            await self._stop_and_release(record, grace_seconds=0)
            record.lifecycle = "terminated"
            await asyncio.to_thread(save_record, paths.record, record)
        except (ProviderError, OSError) as cleanup_exc:
            exc.add_note(f"cleaning up after the failed launch failed too: {cleanup_exc}")

    def _prepare_dirs(self, paths: ReplicaPaths, record: InstanceRecord) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("replicas", "logs", "sockets"):
            # Logs and scripts may show secrets the workload prints: keep them to this user.
            (self.state_dir / sub).mkdir(exist_ok=True, mode=0o700)
        if record.socket:
            socket_dir = Path(record.socket).parent
            socket_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self.state_dir not in socket_dir.parents:
                check_private_dir(socket_dir)
        shutil.rmtree(paths.root, ignore_errors=True)  # what an earlier, finished instance left
        paths.root.mkdir()
        paths.log.parent.mkdir(exist_ok=True)
        save_record(paths.record, record)

    # ------------------------------------------------------------------ stopping

    async def _stop_and_release(self, record: InstanceRecord, *, grace_seconds: float) -> None:
        """Stop every process of the instance (every node's: workers first, the head, which holds
        the nodes' bridge, last), then free its namespaces and socket (idempotent)."""
        nodes: list[ProcessRecord] = [*record.workers, record]
        for node in nodes:
            # A named namespace's inode is read now: the recorded one may name a dead namespace.
            inode = netns_inode(node.netns) if node.netns else node.netns_inode or None
            survivors = await asyncio.to_thread(
                stop_members,
                marker=record.instance_id,
                pgid=node.pid or None,
                netns_inode=inode,
                grace_seconds=grace_seconds,
            )
            if survivors:
                raise TransientError(
                    f"instance {record.instance_id}: processes {survivors} survived SIGKILL (stuck in "
                    "the kernel?); terminate again later"
                )
            if node.netns:
                await self._netns().destroy(NetnsNames(node.netns, node.veth_host, node.veth_ns))
        if record.socket:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.unlink, record.socket)

    # ------------------------------------------------------------------ helpers

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def _find(self, instance_id: str) -> tuple[str, ReplicaPaths] | None:
        parsed = parse_instance_id(instance_id)
        if parsed is None:
            return None
        return replica_key(*parsed), replica_paths(self.state_dir, *parsed)

    def _observe(self, instance_id: str, key: str, paths: ReplicaPaths) -> InstanceStatus:
        record = load_record(paths.record)
        if record is None or record.instance_id != instance_id:
            record = None
        alive = record is not None and launcher_alive(record.pid, record.pid_started_at)
        status = derive_status(
            record,
            launching_here=key in self._launching,
            launcher_alive=alive,
            phase=read_text(paths.phase),
            exit_code=read_int(paths.exit_code),
        )
        if record is None or not record.workers or status.state not in _LIVE:
            return status
        workers_alive = [launcher_alive(w.pid, w.pid_started_at) for w in record.workers]
        codes = [read_int(node_paths(paths, record.replica_id, w.rank).exit_code) for w in record.workers]
        why = failed_worker(record.workers, workers_alive, codes)
        return status if why is None else InstanceStatus(state=InstanceState.EXITED, detail=why)

    def _instance(self, record: InstanceRecord) -> Instance:
        paths = replica_paths(self.state_dir, record.service, record.replica_id)
        details = {
            "mode": record.mode,
            "pid": str(record.pid),
            "log": str(paths.log),
            "workdir": str(paths.workdir),
            "netns": record.netns,
            "veth": record.veth_host,
            "address": record.ns_ip,
            "socket": record.socket,
            "nodes": str(record.num_nodes) if record.num_nodes > 1 else "",
            "cluster_ip": record.cluster_ip,
        }
        return Instance(
            instance_id=record.instance_id,
            service=record.service,
            replica_id=record.replica_id,
            url=record.url,
            placement=record.placement,
            details={k: v for k, v in details.items() if v},
        )
