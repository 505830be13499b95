"""Cloud replicas' logs reach this machine: the mirror reads the VM's real log server
(startup_logserver.py, run here as the startup script runs it) with the replica's log token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from libs.events.types import (
    Placement,
    ReplicaLaunched,
    ReplicaScheduled,
    ReplicaTerminated,
    ServiceRequested,
)
from libs.fleet import fold_events
from libs.servers.ports import free_port, wait_for_port
from services.provisioner.cloud_logs import Target, pull, targets, vm_phase

SERVER = Path(__file__).parents[2] / "services" / "provisioner" / "clouds" / "startup_logserver.py"
TOKEN = "log-token-xyz"


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A VM's $STRATUS_ROOT with a running log server on a free port."""
    root = tmp_path / "vm"
    root.mkdir()
    (root / "log_token").write_text(TOKEN)
    (root / "replica.log").write_bytes(b"setup: ok\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), str(port), str(root)], start_new_session=True)
    try:
        assert wait_for_port("127.0.0.1", port, 15), "the log server did not start"
        yield root, port
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


async def test_the_mirror_appends_only_what_is_new(vm: tuple[Path, int], tmp_path: Path) -> None:
    root, port = vm
    target = Target("svc", 1, f"http://127.0.0.1:{port}")
    mirror = tmp_path / "home" / "replica-1.log"
    async with httpx.AsyncClient(timeout=5) as client:
        assert await pull(client, target, TOKEN, mirror) == len(b"setup: ok\n")
        assert await pull(client, target, TOKEN, mirror) == 0
        big = os.urandom(1024) * 2600  # ~2.5 MiB: several of the server's 1 MiB chunks
        with (root / "replica.log").open("ab") as f:
            f.write(b"run: serving\n" + big)
        assert await pull(client, target, TOKEN, mirror) == len(b"run: serving\n") + len(big)
        assert mirror.read_bytes() == (root / "replica.log").read_bytes()
        with pytest.raises(httpx.HTTPStatusError, match="401"):
            await pull(client, target, "wrong", mirror)


def test_targets_are_launched_cloud_replicas_not_yet_gone() -> None:
    spec = {
        "service": {"readiness_path": "/", "min_replicas": 3, "max_replicas": 3},
        "resources": {},
        "run": "x",
    }
    aws = Placement(cloud="aws", region="us-east-1", zone="use1-az1", instance_type="g5.xlarge")
    events = [
        (ServiceRequested(service="svc", spec=spec), 1.0),
        (ReplicaScheduled(service="svc", replica_id=1, placement=aws), 2.0),
        (ReplicaLaunched(service="svc", replica_id=1, instance_id="aws:us-east-1/i-1", url="http://10.0.0.5:8080",
                         placement=aws), 3.0),
        (ReplicaScheduled(service="svc", replica_id=2, placement=Placement()), 2.0),
        (ReplicaLaunched(service="svc", replica_id=2, instance_id="local-2",
                         url="http://10.213.0.2:8080"), 3.0),
        (ReplicaScheduled(service="svc", replica_id=3, placement=aws), 2.0),
        (ReplicaLaunched(service="svc", replica_id=3, instance_id="aws:us-east-1/i-3", url="http://10.0.0.6:8080",
                         placement=aws), 3.0),
        (ReplicaTerminated(service="svc", replica_id=3, instance_id="aws:us-east-1/i-3"), 4.0),
    ]  # fmt: skip
    assert targets(fold_events(events), 8181) == [
        Target("svc", 1, "http://10.0.0.5:8181", "aws:us-east-1/i-1")
    ]


async def test_the_vms_phase_and_exit_code_are_read(vm: tuple[Path, int]) -> None:
    root, port = vm
    target = Target("svc", 1, f"http://127.0.0.1:{port}", "aws:us-east-1/i-1")
    async with httpx.AsyncClient(timeout=5) as client:
        assert await vm_phase(client, target, TOKEN) == ("starting", None)
        (root / "status").write_text("running\n")
        assert await vm_phase(client, target, TOKEN) == ("running", None)
        (root / "status").write_text("exited 3\n")
        assert await vm_phase(client, target, TOKEN) == ("exited", 3)
        with pytest.raises(httpx.HTTPStatusError, match="401"):
            await vm_phase(client, target, "wrong")
