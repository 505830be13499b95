"""A SkyServe service of ``num_nodes: 2`` end to end on the local provider: through the CLI and the
six services, every node runs with its rank and the nodes' IPs, the head takes the probes and the
traffic, and ``down`` leaves no process or namespace behind."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.provisioner.clouds.local_isolation import netns_unavailable
from services.provisioner.clouds.local_probe import netns_facts

from .conftest import Stack, replica_processes

PY = sys.executable
# Each node writes what SkyPilot told it; the worker serves that note on its bridge address, the
# head fetches it (as a distributed program reaches its peers) and serves both notes: a request
# through the endpoint shows it reached the head, which reached the worker.
SERVICE = f"""\
service:
  readiness_probe: /
  replicas: 1
resources:
  ports: 8080
num_nodes: 2
run: |
  ips=$(echo "$SKYPILOT_NODE_IPS" | paste -sd,)
  echo "rank=$SKYPILOT_NODE_RANK nodes=$SKYPILOT_NUM_NODES ips=$ips" > note.txt
  cat note.txt
  if [ "$SKYPILOT_NODE_RANK" = 0 ]; then
    worker=$(echo "$SKYPILOT_NODE_IPS" | sed -n 2p)
    timeout 20 {PY} -c "
  import time, urllib.request
  for _ in range(400):
      try:
          body = urllib.request.urlopen('http://$worker:8080/note.txt', timeout=1).read().decode()
          break
      except OSError:
          time.sleep(0.05)
  open('index.html', 'w').write('head ' + open('note.txt').read() + 'worker ' + body)
  "
  fi
  exec timeout 300 {PY} -m http.server 8080
"""


@pytest.fixture
def netns_mode() -> None:
    why = netns_unavailable(netns_facts())
    if why is not None:
        pytest.skip(f"multi-node local replicas need netns mode (root): {why}")


def wait_clouds_checked(stack: Stack, within: float = 30) -> None:
    """``up`` judges a cloud-less multi-node spec by the enabled clouds: wait until they are known."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if stack.api("GET", "/v1/clouds", retry_for=10).json().get("checked"):
            return
        time.sleep(0.2)
    raise AssertionError(f"no provisioner checked the clouds:\n{stack.logs_tail()}")


@pytest.mark.usefixtures("netns_mode")
def test_two_node_replica_serves_from_its_head_and_down_stops_every_node(
    stack: Stack, tmp_path: Path
) -> None:
    spec = tmp_path / "multi.yaml"
    spec.write_text(SERVICE)
    wait_clouds_checked(stack)
    r = stack.cli("up", str(spec), "-n", "multi", "-y", "--timeout", "60")
    assert r.returncode == 0, r.stdout + r.stderr + stack.logs_tail()
    svc = stack.wait("multi", lambda s: any(x["status"] == "READY" for x in s["replicas"]), what="READY")
    replica = next(x for x in svc["replicas"] if x["status"] == "READY")
    page = httpx.get(f"http://{svc['endpoint']}/", timeout=10)
    ips = "ips=192.168.213.1,192.168.213.2"
    assert page.status_code == 200, page.text
    assert page.text == f"head rank=0 nodes=2 {ips}\nworker rank=1 nodes=2 {ips}\n"

    logs = stack.home / "provisioner" / "logs" / "multi"
    rid = replica["replica_id"]
    assert f"rank=0 nodes=2 {ips}" in (logs / f"replica-{rid}.log").read_text()
    assert f"rank=1 nodes=2 {ips}" in (logs / f"replica-{rid}-node-1.log").read_text()
    record = json.loads(
        (stack.home / "provisioner" / "replicas" / f"multi-{rid}" / "record.json").read_text()
    )
    namespaces = [record["netns"], *(w["netns"] for w in record["workers"])]
    assert len(namespaces) == 2 and all(Path("/run/netns", n).exists() for n in namespaces)
    instance = replica["instance_id"]
    assert len({p.pid for p in replica_processes(instance)}) >= 4  # two launchers, two servers

    assert stack.cli("down", "multi", "-y").returncode == 0
    stack.wait("multi", lambda s: s["status"] == "TERMINATED", timeout=60, what="TERMINATED")
    assert replica_processes(instance) == []
    assert not any(Path("/run/netns", n).exists() for n in namespaces)
