"""Multi-node local replicas (``num_nodes > 1``): one sandbox per node, joined by a private bridge.

As in SkyServe, a replica is then a cluster: rank 0, the head, is the replica itself (its record,
its namespace; its address is the replica's URL, so probes and traffic go to it). Each worker
rank k gets a network namespace of its own (with its own /30 to the host, like any replica), a
directory ``<replica dir>/node-<k>/`` (scripts, phase, exit code, a private copy of the workdir)
and a log ``replica-<id>-node-<k>.log``; every node runs setup then run under a launcher of its
own. All nodes carry the replica's instance marker, so stopping the replica finds all of them.

The nodes reach each other over a bridge inside the head's namespace: per worker a veth pair with
one end in the worker (``CLUSTER_SUBNET``'s (k+1)-th address) and the other on the bridge, which
holds the first address for the head. That network exists only inside the replica's namespaces,
so every replica uses the same subnet, and no node can reach another replica through it.
``SKYPILOT_NODE_IPS`` lists these addresses, head first (netns mode only: in userns mode a
replica has no network but its socket, so multi-node replicas are refused there).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from pathlib import Path

from .errors import LaunchError
from .local_command import run_command
from .local_layout import ReplicaPaths, paths_under
from .local_netns import NetnsManager, NetnsNames
from .local_records import InstanceRecord, NodeRecord, save_record

CLUSTER_SUBNET = ipaddress.IPv4Network("192.168.213.0/24")
MAX_NODES = CLUSTER_SUBNET.num_addresses - 2  # all but the network and broadcast addresses
BRIDGE = "stcluster"  # in the head's namespace
NODE_LINK = "stnode"  # in each worker's namespace


# --------------------------------------------------------------------------- pure


def check_num_nodes(num_nodes: int, mode: str) -> None:
    if num_nodes < 1 or num_nodes > MAX_NODES:
        raise LaunchError(f"num_nodes is {num_nodes}: a local replica has 1 to {MAX_NODES} nodes")
    if num_nodes > 1 and mode != "netns":
        raise LaunchError(
            f"num_nodes is {num_nodes}, but local replicas run in {mode} mode here, where a replica has "
            "no network its nodes could share: multi-node local replicas need netns mode (root)"
        )


def cluster_ips(num_nodes: int) -> list[str]:
    """The nodes' addresses on the replica's bridge, rank 0 (the head) first."""
    first = int(CLUSTER_SUBNET.network_address) + 1
    return [str(ipaddress.IPv4Address(first + rank)) for rank in range(num_nodes)]


def worker_netns_names(state_dir: Path, service: str, replica_id: int, rank: int) -> NetnsNames:
    """Stable per (state dir, service, replica, rank), distinct from every replica's own names."""
    digest = hashlib.sha256(f"{state_dir}\0{service}\0{replica_id}\0node{rank}".encode()).hexdigest()[:10]
    return NetnsNames(netns=f"stratus-{digest}", veth_host=f"st{digest}h", veth_ns=f"st{digest}n")


def node_paths(paths: ReplicaPaths, replica_id: int, rank: int) -> ReplicaPaths:
    """A worker's files: the head's layout, under ``node-<rank>/``, and a log of its own."""
    if rank == 0:
        return paths
    log = paths.log.with_name(f"replica-{replica_id}-node-{rank}.log")
    return paths_under(paths.root / f"node-{rank}", record="node.json", log=log)


def cluster_commands(ip: str, head_netns: str, workers: list[NodeRecord]) -> list[list[str]]:
    """The bridge in the head's namespace and one veth pair per worker onto it."""
    ips = cluster_ips(len(workers) + 1)
    prefix = CLUSTER_SUBNET.prefixlen
    argvs = [
        [ip, "-n", head_netns, "link", "add", BRIDGE, "type", "bridge"],
        [ip, "-n", head_netns, "addr", "add", f"{ips[0]}/{prefix}", "dev", BRIDGE],
        [ip, "-n", head_netns, "link", "set", BRIDGE, "up"],
    ]
    for w in workers:
        port = f"stport{w.rank}"
        argvs += [
            [ip, "-n", w.netns, "link", "add", NODE_LINK, "type", "veth", "peer", "name", port,
             "netns", head_netns],
            [ip, "-n", head_netns, "link", "set", port, "master", BRIDGE],
            [ip, "-n", head_netns, "link", "set", port, "up"],
            [ip, "-n", w.netns, "addr", "add", f"{ips[w.rank]}/{prefix}", "dev", NODE_LINK],
            [ip, "-n", w.netns, "link", "set", NODE_LINK, "up"],
        ]  # fmt: skip
    return argvs


def failed_worker(workers: list[NodeRecord], alive: list[bool], codes: list[int | None]) -> str | None:
    """Why the replica failed because of a worker, or None. As in SkyPilot, a multi-node job fails
    when any node's command fails (SkyServe then marks the replica failed); a worker that exited 0
    has finished its part while the others run on."""
    for w, up, code in zip(workers, alive, codes, strict=True):
        if up or code == 0:
            continue
        n = len(workers) + 1
        if code is None:
            return f"node {w.rank} of {n} died without recording an exit code (killed from outside?)"
        return f"node {w.rank} of {n} exited with code {code}: a multi-node replica fails with any node"
    return None


# --------------------------------------------------------------------------- adapter


async def create_workers(
    netns: NetnsManager, state_dir: Path, record: InstanceRecord, record_path: Path
) -> None:
    """The workers' namespaces, each recorded before it exists (a crash leaves it to clean up),
    then the bridge joining them to the head's."""
    for rank in range(1, record.num_nodes):
        names = worker_netns_names(state_dir, record.service, record.replica_id, rank)
        node = NodeRecord(rank=rank, netns=names.netns, veth_host=names.veth_host, veth_ns=names.veth_ns)
        record.workers.append(node)
        await asyncio.to_thread(save_record, record_path, record)
        addrs = await netns.create(names)
        node.host_ip, node.ns_ip = addrs.host_ip, addrs.ns_ip
    await join_cluster(netns.ip, record.netns, record.workers)
    record.cluster_ip = cluster_ips(1)[0]


async def join_cluster(ip: str, head_netns: str, workers: list[NodeRecord]) -> None:
    for argv in cluster_commands(ip, head_netns, workers):
        result = await run_command(argv)
        if result.returncode != 0:
            raise LaunchError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
