"""A multi-node cloud replica's workers, seen from the control plane: each node's log token and
recorded IP (real Postgres), and the log mirror against real log servers (startup_logserver.py)
for the head and a worker, each on a loopback address of its own on the same log port, as every
node of a cloud replica serves its log on the one log port: the worker's log reaches its own
file (the local provider's name for a worker's log), and its workload exiting fails the replica
naming the node; a worker that does not answer is skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import asyncpg
import pytest

from libs.bootstrap import NodeLogAccess, issue, node_log_tokens, set_node_ips
from libs.events.types import Placement, ReplicaLaunched, ReplicaScheduled, ServiceRequested
from libs.fleet import fold_events
from libs.fleet.state import FleetState
from libs.runtime.host import ServiceHost
from libs.runtime.settings import Settings
from libs.servers.ports import free_port, wait_for_port
from services.provisioner.cloud_logs import LogMirror, Target, node_log, targets, worker_targets
from services.provisioner.clouds.base import InstanceState
from services.provisioner.clouds.local_layout import replica_paths
from services.provisioner.clouds.local_nodes import node_paths

SERVER = Path(__file__).parents[2] / "services" / "provisioner" / "clouds" / "startup_logserver.py"
# The real log server, bound to one address instead of all (one machine plays several VMs).
BOUND = """\
import http.server, runpy, sys
ip = sys.argv.pop(1)
sys.argv.pop(0)  # "-c": the server sees SERVER PORT ROOT
class Bound(http.server.ThreadingHTTPServer):
    def __init__(self, address, handler):
        super().__init__((ip, address[1]), handler)
http.server.ThreadingHTTPServer = Bound
runpy.run_path(sys.argv[0], run_name="__main__")
"""
INSTANCE = "aws:us-east-1/i-head"
HEAD_IP, WORKER_IP, SILENT_IP = "127.0.0.1", "127.0.0.2", "127.0.0.3"


@pytest.fixture
async def pool(fresh_db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(fresh_db_url, min_size=1, max_size=4)
    try:
        yield p
    finally:
        await p.close()


async def test_each_node_of_the_latest_launch_with_its_ip_and_own_log_token(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    assert await node_log_tokens(pool, "svc", 1, tmp_path) == []  # no table yet
    single = await issue(pool, "svc", 1, 1, tmp_path, now=1e3)
    assert await node_log_tokens(pool, "svc", 1, tmp_path) == [NodeLogAccess(0, "", single.log_token)]
    assert await node_log_tokens(pool, "svc", 9, tmp_path) == []

    first = [
        await issue(pool, "svc", 2, 1, tmp_path, node_rank=r, num_nodes=3, now=1e3 + r) for r in range(3)
    ]
    before = await node_log_tokens(pool, "svc", 2, tmp_path)
    assert before == [NodeLogAccess(r, "", first[r].log_token) for r in range(3)]  # IPs not recorded yet
    ips = ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
    await set_node_ips(pool, "svc", 2, 1, ips, now=1e3)
    assert await node_log_tokens(pool, "svc", 2, tmp_path) == [
        NodeLogAccess(r, ips[r], first[r].log_token) for r in range(3)
    ]
    assert len({t.log_token for t in first}) == 3

    # A later launch of the replica (a new version, two nodes): only its nodes, its tokens.
    later = [
        await issue(pool, "svc", 2, 2, tmp_path, node_rank=r, num_nodes=2, now=2e3 + r) for r in range(2)
    ]
    assert await node_log_tokens(pool, "svc", 2, tmp_path) == [
        NodeLogAccess(r, "", later[r].log_token) for r in range(2)
    ]
    # A redelivered launch of that version: each rank's newest token, the IPs on every token.
    again = await issue(pool, "svc", 2, 2, tmp_path, node_rank=1, num_nodes=2, now=3e3)
    await set_node_ips(pool, "svc", 2, 2, ["10.0.1.5", "10.0.1.6"], now=3e3)
    assert await node_log_tokens(pool, "svc", 2, tmp_path) == [
        NodeLogAccess(0, "10.0.1.5", later[0].log_token),
        NodeLogAccess(1, "10.0.1.6", again.log_token),
    ]


def test_worker_targets_and_their_log_files(tmp_path: Path) -> None:
    head = Target("svc", 4, "http://203.0.113.9:8181", INSTANCE)
    nodes = [NodeLogAccess(0, "10.0.0.5", "t0"), NodeLogAccess(1, "10.0.0.6", "t1"),
             NodeLogAccess(2, "", "t2"), NodeLogAccess(3, "fd00::7", "t3")]  # fmt: skip
    assert worker_targets(head, nodes, 8181) == [
        (Target("svc", 4, "http://10.0.0.6:8181", INSTANCE, node_rank=1, num_nodes=4), "t1"),
        (Target("svc", 4, "http://[fd00::7]:8181", INSTANCE, node_rank=3, num_nodes=4), "t3"),
    ]  # rank 2's IP is not recorded yet; the head is read at its public address
    assert worker_targets(head, nodes[:1], 8181) == []
    settings = Settings(home=tmp_path)
    local = node_paths(replica_paths(settings.provisioner_dir, "svc", 4), 4, 2).log
    assert node_log(settings.replica_log("svc", 4), 4, 2) == local
    assert local.name == "replica-4-node-2.log"


class Vms:
    """Real log servers, all on one port, each on an address of its own (as each VM's is)."""

    def __init__(self, base: Path) -> None:
        self.base, self.port = base, free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, ip: str, rank: int, token: str) -> Path:
        root = self.base / f"vm-{rank}"
        root.mkdir()
        (root / "log_token").write_text(token)
        (root / "replica.log").write_bytes(f"node {rank} of 3 is up\n".encode())
        argv = [sys.executable, "-c", BOUND, ip, str(SERVER), str(self.port), str(root)]
        self.procs.append(subprocess.Popen(argv, start_new_session=True))
        assert wait_for_port(ip, self.port, 15), f"the log server on {ip} did not start"
        return root


@pytest.fixture
def vms(tmp_path: Path) -> Iterator[Vms]:
    out = Vms(tmp_path)
    try:
        yield out
    finally:
        for proc in out.procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def fleet_with_a_launched_replica() -> FleetState:
    spec = {
        "service": {"readiness_path": "/", "min_replicas": 1, "max_replicas": 1},
        "resources": {},
        "run": "x",
    }
    aws = Placement(cloud="aws", region="us-east-1", zone="use1-az1", instance_type="g5.xlarge")
    return fold_events([
        (ServiceRequested(service="svc", spec=spec), 1.0),
        (ReplicaScheduled(service="svc", replica_id=1, placement=aws), 2.0),
        (ReplicaLaunched(service="svc", replica_id=1, instance_id=INSTANCE, url=f"http://{HEAD_IP}:8080",
                         placement=aws), 3.0),
    ])  # fmt: skip


async def three_nodes(pool: asyncpg.Pool, home: Path, vms: Vms) -> tuple[LogMirror, Settings, Path, Path]:
    """A launched 3-node replica: the head and node 1 serve their logs, node 2 does not answer.
    Each VM's log server holds the log token its bootstrap answer carried (the one issued)."""
    issued = [await issue(pool, "svc", 1, 1, home, node_rank=r, num_nodes=3) for r in range(3)]
    await set_node_ips(pool, "svc", 1, 1, ["10.9.0.1", WORKER_IP, SILENT_IP])
    head = vms.start(HEAD_IP, 0, issued[0].log_token)
    worker = vms.start(WORKER_IP, 1, issued[1].log_token)
    settings = Settings(home=home, cloud_log_port=vms.port)
    host = SimpleNamespace(
        store=SimpleNamespace(pool=pool),
        settings=settings,
        fleet=SimpleNamespace(state=fleet_with_a_launched_replica()),
    )
    assert [t.log_url for t in targets(host.fleet.state, vms.port)] == [f"http://{HEAD_IP}:{vms.port}"]
    return LogMirror(cast(ServiceHost, host), timeout=2.0), settings, head, worker


async def test_the_workers_log_is_mirrored_and_its_exit_fails_the_replica_naming_the_node(
    pool: asyncpg.Pool, tmp_path: Path, vms: Vms
) -> None:
    mirror, settings, head, worker = await three_nodes(pool, tmp_path / "home", vms)
    head_log = settings.replica_log("svc", 1)
    worker_log = node_log(head_log, 1, 1)
    (head / "status").write_text("running\n")
    (worker / "status").write_text("running\n")
    await mirror.sync()
    assert head_log.read_bytes() == b"node 0 of 3 is up\n"
    assert worker_log.read_bytes() == b"node 1 of 3 is up\n"
    assert not node_log(head_log, 1, 2).exists()  # node 2 did not answer: skipped this round
    assert mirror.exit_status(INSTANCE) is None  # every node that answers is running

    with (worker / "replica.log").open("ab") as f:
        f.write(b"Traceback: worker crashed\n")
    (worker / "status").write_text("exited 1\n")
    await mirror.sync()
    assert worker_log.read_bytes() == b"node 1 of 3 is up\nTraceback: worker crashed\n"
    assert head_log.read_bytes() == b"node 0 of 3 is up\n"  # each node's log to its own file
    status = mirror.exit_status(INSTANCE)
    assert status is not None and status.state == InstanceState.EXITED and status.exit_code == 1
    assert status.detail == f"node 1 of 3 ({WORKER_IP}): the workload exited (1)"
    assert mirror.exit_status("aws:us-east-1/i-other") is None


async def test_the_heads_exit_still_fails_the_replica(pool: asyncpg.Pool, tmp_path: Path, vms: Vms) -> None:
    mirror, _settings, head, worker = await three_nodes(pool, tmp_path / "home", vms)
    (worker / "status").write_text("running\n")
    (head / "status").write_text("exited 3\n")
    await mirror.sync()
    status = mirror.exit_status(INSTANCE)
    assert status is not None and status.state == InstanceState.EXITED and status.exit_code == 3
    assert status.detail == "the VM's workload exited (3)"
