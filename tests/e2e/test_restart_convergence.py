"""Fault injection: ``kill -9`` any one component in the middle of a deployment and it still
converges: the supervisor restarts the component, the restarted one resumes from the event log,
the service reaches exactly two READY replicas, no replica id is launched twice, and requests
through the endpoint succeed."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from .conftest import Stack

PAGE = "<html><body><p>restart-convergence {name}</p></body></html>\n"

# (component, when it is killed). "frozen": stopped (SIGSTOP) before `up` and killed right
# after, so it certainly dies with its part of the deployment still to do; otherwise killed once
# a replica shows that status (launches in flight, or replicas running their setup).
CASES = [
    ("scheduler", "frozen"),
    ("relay", "frozen"),
    ("provisioner", "PROVISIONING"),
    ("prober", "STARTING"),
    ("router", "STARTING"),
    ("api", "STARTING"),
]


def write_service(tmp_path: Path, name: str) -> Path:
    workdir = tmp_path / f"{name}-site"
    workdir.mkdir()
    (workdir / "index.html").write_text(PAGE.format(name=name))
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        "service:\n"
        "  readiness_probe: /\n"
        "  replicas: 2\n"
        "resources:\n"
        "  ports: 8080\n"
        f"workdir: {workdir}\n"
        # A setup that takes a while leaves a window in which replicas are launched, not ready.
        "setup: sleep 2\n"
        "run: python3 -m http.server 8080\n"
    )
    return spec


def statuses(svc: dict[str, Any]) -> list[str]:
    return [r["status"] for r in svc["replicas"]]


def ready_ids(svc: dict[str, Any]) -> set[int]:
    return {r["replica_id"] for r in svc["replicas"] if r["status"] == "READY"}


def replica_instances(stack: Stack, service: str) -> set[str]:
    """Instance ids of the processes running replicas of ``service`` in this stack."""
    found = set()
    home = str(stack.home)
    for p in psutil.process_iter():
        try:
            env = p.environ()
            if env.get("STRATUS_SERVICE_NAME") != service or "STRATUS_INSTANCE_ID" not in env:
                continue
            if not p.cwd().startswith(home):
                continue
            found.add(env["STRATUS_INSTANCE_ID"])
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.parametrize(("component", "stage"), CASES, ids=[c for c, _ in CASES])
def test_kill_component_mid_deployment_converges(
    stack: Stack, tmp_path: Path, component: str, stage: str
) -> None:
    name = f"rc-{component}"
    spec = write_service(tmp_path, name)
    if stage == "frozen":
        os.kill(stack.component_pid(component), signal.SIGSTOP)
        try:
            r = stack.cli("up", str(spec), "-n", name, "-y", "--detach", timeout=60)
        finally:
            stack.kill_component(component)  # SIGKILL ends a stopped process too
        assert r.returncode == 0, r.stdout + r.stderr
    else:
        r = stack.cli("up", str(spec), "-n", name, "-y", "--detach", timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        # Launched-not-ready counts too: a launch can finish between two polls.
        wanted = {stage, "STARTING"}
        stack.wait(
            name, lambda s: any(st in wanted for st in statuses(s)), timeout=30, interval=0.05,
            what=f"a replica {stage}",
        )  # fmt: skip
        before = stack.service(name)
        assert not ready_ids(before), f"a replica was READY before {component} was killed: {before}"
        stack.kill_component(component)

    svc = stack.wait(
        name, lambda s: s["status"] == "READY" and len(ready_ids(s)) == 2, timeout=90,
        what=f"2 READY replicas after restarting {component}",
    )  # fmt: skip
    # Exactly two replicas: none extra still starting, none failed and replaced.
    assert sorted(statuses(svc)) == ["READY", "READY"], svc["replicas"]

    events = stack.events(name)
    scheduled = Counter(e["data"]["replica_id"] for e in events if e["type"] == "ReplicaScheduled")
    launched = Counter(e["data"]["replica_id"] for e in events if e["type"] == "ReplicaLaunched")
    assert all(n == 1 for n in scheduled.values()), f"a replica id was scheduled twice: {scheduled}"
    assert all(n == 1 for n in launched.values()), f"a replica id was launched twice: {launched}"
    assert set(scheduled) == set(launched) == ready_ids(svc), (scheduled, launched, svc["replicas"])
    failures = ("ReplicaLaunchFailed", "ReplicaFailed", "ReplicaProcessExited", "Preempted")
    assert not [e for e in events if e["type"] in failures], [e for e in events if e["type"] in failures]

    # Only the two launched instances run: an interrupted launch left no second copy behind.
    instances = {r["instance_id"] for r in svc["replicas"]}
    deadline = time.monotonic() + 10
    while (running := replica_instances(stack, name)) != instances and time.monotonic() < deadline:
        time.sleep(0.3)
    assert running == instances, f"replica processes {running}, launched instances {instances}"

    url = f"http://{svc['endpoint']}/"
    with httpx.Client(timeout=10) as client:
        # The status is read from Postgres; the router learns READY from the bus, which lags
        # while a killed relay's lease runs out: wait (bounded) for the first routed answer.
        deadline = time.monotonic() + 15
        while (first := client.get(url)).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.status_code == 200, first.text
        for _ in range(20):
            page = client.get(url)
            assert page.status_code == 200, page.text
            assert f"restart-convergence {name}" in page.text

    # Leave the machine quiet for the next case (the stack's teardown cleans up the rest).
    assert stack.cli("down", name, "-y", timeout=60).returncode == 0
