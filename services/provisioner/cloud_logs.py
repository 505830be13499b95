"""Cloud replicas' logs, mirrored to this machine so ``stratus logs NAME ID`` reads them as a local
replica's: every round, each launched cloud replica's log server (``startup_logserver``, on the
VM's log port, behind its per-replica log token) is asked for what it wrote since the mirror's
size, and that is appended to the same file a local replica writes
(``Settings.replica_log``). The file stays after the VM is gone.

The same round reads the VM's ``/status``: a workload that exited while its VM still runs is
only visible there, so ``exit_status`` tells the ``CloudRouter`` (and so the monitor) about it.

A multi-node replica's workers run a log server each (same log port, each its own log token):
the round also reads every worker at its recorded node IP (``libs.bootstrap.node_log_tokens``),
mirrors its log to the file a local worker writes (``replica-<id>-node-<rank>.log``, named by
``local_nodes.node_paths``; ``stratus logs NAME ID`` shows the head's, as on the local provider),
and a worker whose workload exited fails the replica as the head's would (as SkyPilot and the
local provider do), naming the node.

``targets`` / ``worker_targets`` are pure (which replicas and nodes, where); ``pull`` /
``vm_phase`` do one node's HTTP reads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from libs.bootstrap import BootstrapError, NodeLogAccess, node_log_tokens
from libs.fleet.state import FleetState
from libs.runtime.host import ServiceHost

from .clouds.base import InstanceState, InstanceStatus
from .clouds.local_layout import paths_under
from .clouds.local_nodes import node_paths

log = logging.getLogger("stratus.provisioner.logs")

MIRROR_INTERVAL_SECONDS = 2.0
MAX_ROUNDS_PER_PULL = 16  # a round reads at most this many 1 MiB chunks per replica


@dataclass(frozen=True)
class Target:
    service: str
    replica_id: int
    log_url: str  # http://<VM address>:<log port>
    instance_id: str = ""
    node_rank: int = 0  # a worker of a multi-node replica: > 0
    num_nodes: int = 1


def targets(fleet: FleetState, log_port: int) -> list[Target]:
    """Launched cloud replicas not yet known to be gone."""
    out: list[Target] = []
    for svc in fleet.services.values():
        for r in svc.replicas.values():
            if r.placement.cloud in ("", "local") or not r.url or r.terminated_at is not None:
                continue
            host = urlsplit(r.url).hostname
            if host:
                out.append(Target(svc.name, r.replica_id, f"http://{host}:{log_port}", r.instance_id))
    return out


def _url_host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def worker_targets(head: Target, nodes: Sequence[NodeLogAccess], log_port: int) -> list[tuple[Target, str]]:
    """The log servers of ``head``'s workers whose IP is recorded, each with its log token."""
    out = []
    for n in nodes:
        if n.rank > 0 and n.ip:
            url = f"http://{_url_host(n.ip)}:{log_port}"
            out.append((replace(head, log_url=url, node_rank=n.rank, num_nodes=len(nodes)), n.log_token))
    return out


def node_log(head_log: Path, replica_id: int, rank: int) -> Path:
    """Where a worker's log is mirrored: next to the head's, named as a local worker's log."""
    return node_paths(paths_under(head_log.parent, record="", log=head_log), replica_id, rank).log


def exit_detail(target: Target, code: int | None) -> str:
    if target.node_rank == 0:
        return f"the VM's workload exited ({code})"
    host = urlsplit(target.log_url).hostname
    return f"node {target.node_rank} of {target.num_nodes} ({host}): the workload exited ({code})"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(data)


async def pull(client: httpx.AsyncClient, target: Target, token: str, path: Path) -> int:
    """Append what the VM's log server has past the mirror's end; returns the bytes added."""
    added = 0
    for _ in range(MAX_ROUNDS_PER_PULL):
        offset = _size(path)
        resp = await client.get(
            f"{target.log_url}/log", params={"offset": offset}, headers={"Authorization": f"Bearer {token}"}
        )
        if resp.status_code != 200:
            raise httpx.HTTPStatusError(
                f"log server answered {resp.status_code}", request=resp.request, response=resp
            )
        if not resp.content:
            break
        _append(path, resp.content)
        added += len(resp.content)
        if offset + len(resp.content) >= int(resp.headers.get("X-Log-Size", "0") or 0):
            break
    return added


async def vm_phase(client: httpx.AsyncClient, target: Target, token: str) -> tuple[str, int | None]:
    """The runner's phase on the VM ("setup", "running", "exited"...) and its exit code."""
    resp = await client.get(f"{target.log_url}/status", headers={"Authorization": f"Bearer {token}"})
    if resp.status_code != 200:
        raise httpx.HTTPStatusError(
            f"log server answered {resp.status_code}", request=resp.request, response=resp
        )
    body = resp.json()
    code = body.get("exit_code")
    return str(body.get("phase", "")), int(code) if isinstance(code, int) else None


class LogMirror:
    def __init__(self, host: ServiceHost, timeout: float = 3.0) -> None:
        self.host = host
        self.timeout = timeout
        self._nodes: dict[tuple[str, int], list[NodeLogAccess]] = {}
        # instance id -> (exit code, detail), once the head's or a worker's runner says "exited"
        self._exits: dict[str, tuple[int | None, str]] = {}

    def exit_status(self, instance_id: str) -> InstanceStatus | None:
        """EXITED if a node's runner said its workload ended (None: nothing known)."""
        if instance_id not in self._exits:
            return None
        code, detail = self._exits[instance_id]
        return InstanceStatus(state=InstanceState.EXITED, exit_code=code, detail=detail)

    async def _access(self, service: str, replica_id: int) -> list[NodeLogAccess]:
        """The replica's nodes (rank 0 first), kept once every worker's IP is known."""
        key = (service, replica_id)
        if key not in self._nodes:
            found = await node_log_tokens(self.host.store.pool, service, replica_id, self.host.settings.home)
            if len(found) > 1 and not all(n.ip for n in found[1:]):
                return found
            self._nodes[key] = found
        return self._nodes[key]

    async def _read(self, client: httpx.AsyncClient, target: Target, token: str, path: Path) -> None:
        """One node: its log past the mirror's end, then its phase; skipped if it does not answer."""
        try:
            await pull(client, target, token, path)
            phase, code = await vm_phase(client, target, token)
            if phase == "exited":  # its log is final now: its last lines before the replica ends
                await pull(client, target, token, path)
        except (httpx.HTTPError, OSError) as exc:
            node = f" node {target.node_rank}" if target.node_rank else ""
            log.debug("log of %s replica %s%s: %s", target.service, target.replica_id, node, exc)
            return
        if phase == "exited" and target.instance_id:
            self._exits.setdefault(target.instance_id, (code, exit_detail(target, code)))

    async def sync(self) -> None:
        """One round over every cloud replica's nodes; a node that does not answer is skipped."""
        settings = self.host.settings
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for target in targets(self.host.fleet.state, settings.cloud_log_port):
                try:
                    nodes = await self._access(target.service, target.replica_id)
                except BootstrapError as exc:
                    log.debug("log tokens of %s replica %s: %s", target.service, target.replica_id, exc)
                    continue
                if not nodes or nodes[0].rank != 0:
                    continue
                path = settings.replica_log(target.service, target.replica_id)
                await self._read(client, target, nodes[0].log_token, path)
                for worker, token in worker_targets(target, nodes, settings.cloud_log_port):
                    own = node_log(path, target.replica_id, worker.node_rank)
                    await self._read(client, worker, token, own)
