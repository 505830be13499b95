"""A ``num_nodes: 2`` service on emulated AWS end to end: the whole stack through the real CLI,
moto behind the fault proxy, and this machine playing both VMs by running each instance's
user-data (as cloud-init would), each in a root of its own.

Each node redeems its own one-time token at the real API and learns its rank and both nodes'
private IPs from the answer; the worker serves its note on its private address, the head fetches
it (as a distributed program reaches its peers) and serves both notes: a request through the
endpoint shows the traffic reached the head, which reached the worker. The proxy reports every
public address as 127.0.0.1 (the prober's and router's way to the head) and each private one as
a distinct loopback address (127.x.y.z from moto's 172.x.y.z), so the nodes' addresses differ.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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

from libs.servers.ports import free_port
from libs.spec.launch import MULTI_NODE_CLOUDS
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
    echo $$ > "$STRATUS_ROOT/run.pid"; exec python3 -m http.server {port} --bind "$me"
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
            if rank:  # one machine plays both VMs: the worker's log server needs a port of its own
                script = re.sub(
                    r"(?m)^export STRATUS_LOG_PORT=\d+$", f"export STRATUS_LOG_PORT={free_port()}", script
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

        shown = json.loads(cloud_stack.cli("status", "multi", "--json", check=True).stdout)
        services = shown if isinstance(shown, list) else shown.get("services", [shown])
        (row,) = [
            r for s in services for r in s["replicas"] if r.get("instance_id") == replica["instance_id"]
        ]
        assert row["resources"].startswith("2x AWS(") and row["price_per_hour"] == pytest.approx(2 * per_node)
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
