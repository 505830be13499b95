"""SkyServe's "Hello, SkyServe!" end to end, through the six services talking only by events."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from .conftest import REPO, Stack, replica_processes

HELLO = str(REPO / "examples" / "hello-sky-serve.yaml")


def ready_ids(svc: dict[str, Any]) -> set[int]:
    return {r["replica_id"] for r in svc["replicas"] if r["status"] == "READY"}


def endpoint_closed(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
        except httpx.HTTPError:
            return True
        time.sleep(0.2)
    return False


def request_lines(log: Path) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines() if '"GET / HTTP/1.1" 200' in line)


class Load(threading.Thread):
    """Requests through the endpoint in a loop (bounded in time), recording every failure."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.url, self.seconds = url, seconds
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    r = client.get(self.url)
                    if r.status_code == 200 and "SkyServe" in r.text:
                        self.ok += 1
                    else:
                        self.failures.append(f"HTTP {r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.01)


def test_hello_up_serve_recover_down(stack: Stack) -> None:
    r = stack.cli("up", HELLO, "-n", "hello", "-y", "--timeout", "120")
    assert r.returncode == 0, r.stdout + r.stderr + stack.logs_tail()
    assert "Endpoint:" in r.stdout
    svc = stack.wait("hello", lambda s: len(ready_ids(s)) == 2, what="2 READY replicas")
    endpoint = svc["endpoint"]
    url = f"http://{endpoint}/"

    # `status --endpoint` prints it, as SkyServe's does.
    assert stack.cli("status", "--endpoint", "hello", check=True).stdout.strip() == endpoint

    # Requests reach both replicas (least_load spreads them).
    with httpx.Client(timeout=10) as client:
        for _ in range(40):
            page = client.get(url)
            assert page.status_code == 200 and "My First SkyServe Service" in page.text
    logs = {
        rid: stack.home / "provisioner" / "logs" / "hello" / f"replica-{rid}.log" for rid in ready_ids(svc)
    }
    served = {rid: request_lines(path) for rid, path in logs.items()}
    assert all(n > 0 for n in served.values()), served

    # Kill one replica's process: it is replaced, and no request fails while the other is READY.
    victim = min(ready_ids(svc))
    instance = next(r["instance_id"] for r in svc["replicas"] if r["replica_id"] == victim)
    procs = replica_processes(instance)
    assert procs, f"no process found for {instance}"
    load = Load(url, seconds=60)
    load.start()
    time.sleep(0.5)
    for p in procs:
        if "http.server" in " ".join(p.cmdline()):
            os.kill(p.pid, signal.SIGKILL)
    after = stack.wait(
        "hello", lambda s: len(ready_ids(s) - {victim}) == 2, timeout=90, what="a replacement READY replica"
    )
    load.stop.set()
    load.join(15)
    assert load.ok > 20
    assert load.failures == [], load.failures[:5]
    assert victim not in ready_ids(after)

    # `down`: every replica process ends, the endpoint closes.
    instances = {
        e["data"].get("instance_id") for e in stack.events("hello") if e["type"] == "ReplicaLaunched"
    }
    assert stack.cli("down", "hello", "-y").returncode == 0
    stack.wait("hello", lambda s: s["status"] == "TERMINATED", timeout=60, what="TERMINATED")
    for iid in instances:
        assert replica_processes(iid) == [], f"{iid} still has processes"
    # The router closes the endpoint once it folds ServiceTerminated (a moment after the API shows it).
    assert endpoint_closed(url, timeout=15), "the endpoint still answers after down"

    # The event log holds the whole story, in order.
    types = [e["type"] for e in stack.events("hello")]
    positions = [e["position"] for e in stack.events("hello")]
    assert positions == sorted(positions)

    def first(t: str) -> int:
        return types.index(t)

    assert first("ServiceRequested") == 0
    assert (
        first("ServiceRequested")
        < first("ReplicaScheduled")
        < first("ReplicaLaunched")
        < first("ReplicaReady")
    )
    assert "EndpointAssigned" in types
    assert "ReplicaProcessExited" in types
    assert types.count("ReplicaReady") >= 3
    assert first("ServiceDownRequested") < len(types) - 1 - types[::-1].index("ReplicaTerminated")
    assert types[-1] == "ServiceTerminated"
