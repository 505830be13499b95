"""A ``num_nodes: 2`` service on emulated AWS end to end: the whole stack through the real CLI,
moto behind the fault proxy, and this machine playing both VMs by running each instance's
user-data (as cloud-init would), each in a root of its own.

Each node redeems its own one-time token at the real API and learns its rank and both nodes'
private IPs from the answer; the worker serves its note on its private address, the head fetches
it (as a distributed program reaches its peers) and serves both notes: a request through the
endpoint shows the traffic reached the head, which reached the worker. The proxy reports every
public address as 127.0.0.1 (the prober's and router's way to the head) and each private one as
a distinct loopback address (127.x.y.z from moto's 172.x.y.z), so the nodes' addresses differ.

The control plane mirrors each node's log (the worker's read at its private IP, with its own log
token), and when the worker's run command fails while both VMs run on, the replica fails naming
the node and is replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from libs.runtime.settings import Settings
from libs.servers.ports import free_port
from libs.spec.launch import MULTI_NODE_CLOUDS
from services.provisioner.cloud_logs import node_log
from tests.fakes.aws_ec2 import EC2_NS, EmulatedAws, emulated_aws

from .conftest import Stack
from .test_cloud_failover import AWS_ENV, cloud_db, cloud_stack, launched, user_data

__all__ = ["cloud_db", "cloud_stack"]  # fixtures (over this module's ``aws``)

pytestmark = pytest.mark.skipif(
    "aws" not in MULTI_NODE_CLOUDS,
    reason="libs.spec.launch.MULTI_NODE_CLOUDS does not list aws yet: `up` refuses num_nodes > 1 there",
)

SPEC = """\
service:
  readiness_probe: /
  replicas: 1
resources:
  cloud: aws
  region: us-east-1
  accelerators: A10G:1
  ports: {port}
num_nodes: {nodes}
run: |
  me=$(echo "$SKYPILOT_NODE_IPS" | sed -n "$((SKYPILOT_NODE_RANK + 1))p")
  ips=$(echo "$SKYPILOT_NODE_IPS" | paste -sd,)
  echo "rank=$SKYPILOT_NODE_RANK nodes=$SKYPILOT_NUM_NODES ips=$ips" > note.txt
  echo "node $SKYPILOT_NODE_RANK of $SKYPILOT_NUM_NODES is up"
  if [ "$SKYPILOT_NODE_RANK" != 0 ]; then
    python3 -m http.server {port} --bind "$me" & echo $! > "$STRATUS_ROOT/run.pid"
    until [ -e "$STRATUS_ROOT/fail" ]; do sleep 0.1; done
    echo "node $SKYPILOT_NODE_RANK gives up"; exit 1
  fi
  worker=$(echo "$SKYPILOT_NODE_IPS" | sed -n 2p)
  python3 -c "
  import time, urllib.request
  for _ in range(400):
      try:
          body = urllib.request.urlopen('http://$worker:{port}/note.txt', timeout=1).read().decode()
          break
      except OSError:
          time.sleep(0.05)
  open('index.html', 'w').write('head ' + open('note.txt').read() + 'worker ' + body)
  "
  echo $$ > "$STRATUS_ROOT/run.pid"; exec python3 -m http.server {port} --bind 127.0.0.1
"""


def private_loopback(address: str) -> str:
    """172.31.7.9 -> 127.31.7.9: distinct per node, and reachable here."""
    return "127." + address.split(".", 1)[1]


def rewrite_addresses(action: str, body: bytes) -> bytes:
    if action not in ("DescribeInstances", "RunInstances"):
        return body
    root = ET.fromstring(body)
    ET.register_namespace("", root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else EC2_NS)
    for el in root.iter():
        name = el.tag.rsplit("}", 1)[-1]
        if name in ("ipAddress", "publicIp") and el.text:
            el.text = "127.0.0.1"
        elif name == "privateIpAddress" and el.text:
            el.text = private_loopback(el.text)
    out: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return out


@pytest.fixture(scope="module")
def aws() -> Iterator[EmulatedAws]:
    with pytest.MonkeyPatch.context() as mp:
        for var, value in AWS_ENV.items():
            mp.setenv(var, value)
        with emulated_aws() as emulated:
            mp.setattr(emulated, "rewrite", rewrite_addresses)
            yield emulated


def ec2_nodes(aws: EmulatedAws, head: str) -> list[dict[str, Any]]:
    """The head and its workers as the provider sees them (through the proxy), by rank."""
    ec2 = boto3.client("ec2", endpoint_url=aws.endpoint_url, region_name="us-east-1")
    (head_desc,) = ec2.describe_instances(InstanceIds=[head])["Reservations"][0]["Instances"]
    found = ec2.describe_instances(Filters=[{"Name": "tag:stratus:head", "Values": [head]}])
    workers = [i for r in found["Reservations"] for i in r["Instances"]]
    rank = {
        i["InstanceId"]: next(t["Value"] for t in i["Tags"] if t["Key"] == "stratus:node-rank")
        for i in workers
    }
    return [head_desc, *sorted(workers, key=lambda i: int(rank[i["InstanceId"]]))]


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def replica_price(stack: Stack, spec: Path, name: str) -> float:
    plan = json.loads(stack.cli("up", str(spec), "-n", name, "--dry-run", "--json", check=True).stdout)
    return float(plan["placement"]["price_per_hour"])


def test_both_nodes_boot_from_their_user_data_with_rank_and_ips_and_the_head_serves(
    cloud_stack: Stack, aws: EmulatedAws, tmp_path: Path
) -> None:
    port = free_port()
    spec, single = tmp_path / "multi.yaml", tmp_path / "single.yaml"
    spec.write_text(SPEC.format(port=port, nodes=2))
    single.write_text(SPEC.format(port=port, nodes=1))
    # A replica of two nodes costs two instances an hour, in the plan and in `status`.
    per_node = replica_price(cloud_stack, single, "one")
    assert replica_price(cloud_stack, spec, "multi") == pytest.approx(2 * per_node)

    cloud_stack.cli("up", str(spec), "-n", "multi", "-y", "--detach", check=True)
    svc = cloud_stack.wait("multi", lambda s: bool(launched(s)), timeout=120, what="a launched replica")
    (replica,) = launched(svc)
    head_id = replica["instance_id"].rsplit("/", 1)[1]
    nodes = ec2_nodes(aws, head_id)
    assert len(nodes) == 2 and len({n["Placement"]["AvailabilityZone"] for n in nodes}) == 1
    ips = [n["PrivateIpAddress"] for n in nodes]
    assert len(set(ips)) == 2 and all(ip.startswith("127.") for ip in ips)

    roots = [tmp_path / f"vm-{rank}" for rank in range(2)]
    try:
        for rank in (1, 0):  # the worker first: the head looks for it
            script = user_data(aws, nodes[rank]["InstanceId"])
            # One machine plays both VMs: each node's log server (on the one log port, as on a
            # cloud) listens on its own address: the head's public one, the worker's private one.
            bind = ips[rank] if rank else "127.0.0.1"
            script = script.replace(
                'ThreadingHTTPServer(("0.0.0.0", port)', f'ThreadingHTTPServer(("{bind}", port)'
            )
            home = tmp_path / f"home-{rank}"
            home.mkdir()
            (tmp_path / f"user-data-{rank}").write_text(script)
            env = {"PATH": os.environ["PATH"], "STRATUS_ROOT": str(roots[rank]), "HOME": str(home)}
            done = subprocess.run(["bash", str(tmp_path / f"user-data-{rank}")], env=env, capture_output=True,
                                  text=True, timeout=60)  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
        svc = cloud_stack.wait(
            "multi", lambda s: any(r["status"] == "READY" for r in s["replicas"]), timeout=60,
            what="the two-node replica READY",
        )  # fmt: skip
        page = httpx.get(f"http://{svc['endpoint']}/", timeout=10)
        both = ",".join(ips)
        assert page.status_code == 200, page.text
        assert page.text == f"head rank=0 nodes=2 ips={both}\nworker rank=1 nodes=2 ips={both}\n", page.text
        for rank in range(2):
            log = (roots[rank] / "replica.log").read_text()
            assert f"node {rank} of 2 is up" in log, log
        # `stratus logs` mirrors the head's log (with the head's log token).
        deadline = time.monotonic() + 30
        logs = ""
        while time.monotonic() < deadline and "node 0 of 2 is up" not in logs:
            logs = cloud_stack.cli("logs", "multi", str(replica["replica_id"]), "--no-follow").stdout
            time.sleep(0.5)
        assert "node 0 of 2 is up" in logs and "node 1 of 2" not in logs, logs + cloud_stack.logs_tail()
        # The worker's log (read at its private IP, with its own log token) goes to its own file,
        # named as a local worker's.
        settings = Settings(home=cloud_stack.home)
        worker_log = node_log(settings.replica_log("multi", replica["replica_id"]), replica["replica_id"], 1)
        wait_for(lambda: "node 1 of 2 is up" in read(worker_log), 30, "the worker's log mirrored")

        shown = json.loads(cloud_stack.cli("status", "multi", "--json", check=True).stdout)
        services = shown if isinstance(shown, list) else shown.get("services", [shown])
        (row,) = [
            r for s in services for r in s["replicas"] if r.get("instance_id") == replica["instance_id"]
        ]
        assert row["resources"].startswith("2x AWS(") and row["price_per_hour"] == pytest.approx(2 * per_node)

        # The worker's workload fails while both VMs run on: the replica fails, naming the node,
        # and a new replica takes its place (EC2 alone would still say "running").
        (roots[1] / "fail").touch()
        deadline = time.monotonic() + 30
        exits: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not exits:
            exits = [e for e in cloud_stack.events("multi") if e["type"] == "ReplicaProcessExited"]
            time.sleep(0.25)
        assert exits and exits[0]["data"]["instance_id"] == replica["instance_id"], cloud_stack.logs_tail()
        assert exits[0]["data"]["exit_code"] == 1
        assert exits[0]["data"]["reason"] == f"node 1 of 2 ({ips[1]}): the workload exited (1)"
        cloud_stack.wait(
            "multi", lambda s: any(r["replica_id"] != replica["replica_id"] for r in s["replicas"]),
            timeout=30, what="a replica in place of the failed one",
        )  # fmt: skip
        assert "node 1 gives up" in read(worker_log)
    finally:
        for root in roots:
            for name in ("replica.pid", "run.pid"):
                pid_file = root / name
                if pid_file.exists():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.killpg(int(pid_file.read_text()), signal.SIGKILL)
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    cloud_stack.cli("down", "multi", "-y", check=True)
    # `down` terminates both EC2 instances (seen from the cloud's side).
    ec2 = boto3.client("ec2", endpoint_url=aws.moto_url, region_name="us-east-1")
    ids = [n["InstanceId"] for n in nodes]
    deadline = time.monotonic() + 30
    states: set[str] = set()
    while time.monotonic() < deadline and states != {"terminated"}:
        found = ec2.describe_instances(InstanceIds=ids)["Reservations"]
        states = {i["State"]["Name"] for r in found for i in r["Instances"]}
        time.sleep(0.2)
    assert states == {"terminated"}, cloud_stack.logs_tail()
