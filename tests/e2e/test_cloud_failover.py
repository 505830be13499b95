"""Cloud failover end to end: the whole stack, through the real CLI, against emulated AWS (moto in
server mode behind the fault proxy; the provisioner's real boto3 reaches it via AWS_ENDPOINT_URL).

The cheapest zone for the spec answers RunInstances with EC2's InsufficientInstanceCapacity; the
replica must land on the next-cheapest offer, the failure recorded with its reason, and `status`
must show the cloud, region and hourly price. moto boots no machine (its addresses are
rewritten to 127.0.0.1 so probes stay on loopback), so that replica never becomes READY; the
second test plays the VM itself by running the instance's user-data here.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from libs.servers.ports import free_port
from tests.fakes.aws_ec2 import EmulatedAws, emulated_aws

from .conftest import Stack

SPEC = """\
service:
  readiness_probe: /
  replicas: 1
resources:
  cloud: aws
  region: us-east-1
  accelerators: A10G:1
  use_spot: true
  ports: 8080
run: python -m http.server 8080
"""
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}  # fmt: skip


@pytest.fixture(scope="module")
def aws() -> Iterator[EmulatedAws]:
    with pytest.MonkeyPatch.context() as mp:
        for var, value in AWS_ENV.items():
            mp.setenv(var, value)
        with emulated_aws() as emulated:
            emulated.loopback_addresses = True
            yield emulated


@pytest.fixture(scope="module")
async def cloud_db(postgres_admin_url: str) -> AsyncIterator[str]:
    from tests.conftest import _create_database, _drop_database, _with_database

    name = await _create_database(postgres_admin_url)
    try:
        yield _with_database(postgres_admin_url, name)
    finally:
        await _drop_database(postgres_admin_url, name)


@pytest.fixture(scope="module")
def cloud_stack(
    tmp_path_factory: pytest.TempPathFactory, nats_url: str, cloud_db: str, aws: EmulatedAws
) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stratus-cloud-home")
    (home / "config.yaml").write_text("allowed_clouds: [aws]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "AZURE_"))}
    env.update({
        **AWS_ENV,
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "STRATUS_HOME": str(home), "NATS_URL": nats_url, "DATABASE_URL": cloud_db,
        "STRATUS_API_URL": f"http://127.0.0.1:{free_port()}",
        "STRATUS_BUS_PREFIX": f"e2e{uuid.uuid4().hex[:8]}",
        "STRATUS_ROUTER_ID": f"router-e2e-{uuid.uuid4().hex[:6]}",
        "STRATUS_PROBE_INTERVAL": "0.5", "STRATUS_MONITOR_INTERVAL": "0.5", "STRATUS_RESYNC_INTERVAL": "1.0",
        "STRATUS_RETRY_BACKOFF_SECONDS": "1",
        "STRATUS_CLOUD_INGRESS_CIDR": "127.0.0.1/32", "STRATUS_AWS_REGIONS": "us-east-1",
        "STRATUS_CLOUD_LOG_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    })  # fmt: skip
    s = Stack(home, env)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def zone_names(aws: EmulatedAws) -> dict[str, str]:
    ec2 = boto3.client("ec2", endpoint_url=aws.moto_url, region_name="us-east-1")
    return {z["ZoneId"]: z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}


def launched(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in svc["replicas"] if r.get("instance_id")]


def test_the_cheapest_zone_has_no_capacity_so_the_replica_lands_on_the_next(
    cloud_stack: Stack, aws: EmulatedAws, tmp_path: Path
) -> None:
    spec = tmp_path / "a10g.yaml"
    spec.write_text(SPEC)
    # The provisioner checked its credentials against the emulated AWS: aws is enabled.
    check = cloud_stack.cli("check", "--json", check=True)
    assert json.loads(check.stdout)["enabled"] == ["local", "aws"], check.stdout

    plan = json.loads(
        cloud_stack.cli("up", str(spec), "-n", "a10g", "--dry-run", "--json", check=True).stdout
    )
    first = plan["placement"]
    assert (first["cloud"], first["region"], first["instance_type"]) == ("aws", "us-east-1", "g5.xlarge")
    names = zone_names(aws)
    aws.fail_run(
        "InsufficientInstanceCapacity",
        "We currently do not have sufficient g5.xlarge capacity in the Availability Zone you requested",
        zone=names[first["zone"]],
    )

    cloud_stack.cli("up", str(spec), "-n", "a10g", "-y", "--detach", check=True)
    svc = cloud_stack.wait("a10g", lambda s: bool(launched(s)), timeout=180, what="a launched replica")
    (replica,) = launched(svc)
    events = cloud_stack.events("a10g")
    failures = [e for e in events if e["type"] == "ReplicaLaunchFailed"]
    assert failures and failures[0]["data"]["kind"] == "capacity", failures
    assert "InsufficientInstanceCapacity" in failures[0]["data"]["message"]
    assert failures[0]["data"]["placement"]["zone"] == first["zone"]

    ok = [e for e in events if e["type"] == "ReplicaLaunched"][-1]["data"]
    landed = ok["placement"]
    assert landed["cloud"] == "aws" and landed["zone"] != first["zone"]
    assert landed["price_per_hour"] >= first["price_per_hour"]
    runs = aws.actions("RunInstances")
    assert [r.get("Placement.AvailabilityZone") for r in runs][-1] == names[landed["zone"]]
    assert runs[-1]["InstanceMarketOptions.MarketType"] == "spot"
    assert replica["instance_id"].startswith("aws:us-east-1/i-")

    # `status`: the table shows the cloud and region; --json has the price as well.
    text = cloud_stack.cli("status", check=True).stdout
    assert "AWS([Spot]g5.xlarge" in text and "us-east-1" in text, text
    shown = json.loads(cloud_stack.cli("status", "a10g", "--json", check=True).stdout)
    services = shown if isinstance(shown, list) else shown.get("services", [shown])
    rows = [r for s in services for r in s["replicas"] if r.get("instance_id") == replica["instance_id"]]
    assert [(r["cloud"], r["region"], r["zone"], r["price_per_hour"]) for r in rows] == [
        ("aws", "us-east-1", landed["zone"], landed["price_per_hour"])
    ], shown
    assert landed["price_per_hour"] > 0
    # AWS takes the spot instance back: the provisioner sees Server.SpotInstanceTermination,
    # records the preemption, and the scheduler launches a replacement.
    aws.interrupt(replica["instance_id"].rsplit("/", 1)[1])
    first_id = replica["instance_id"]
    svc = cloud_stack.wait(
        "a10g", lambda s: any(r.get("instance_id") not in (None, first_id) for r in s["replicas"]),
        timeout=120, what="a replacement for the preempted replica",
    )  # fmt: skip
    preempted = [e for e in cloud_stack.events("a10g") if e["type"] == "Preempted"]
    assert [e["data"]["instance_id"] for e in preempted] == [replica["instance_id"]]
    (replacement,) = [r for r in launched(svc) if r["instance_id"] != replica["instance_id"]]
    assert replacement["instance_id"].startswith("aws:us-east-1/i-")

    cloud_stack.cli("down", "a10g", "-y", check=True)
    # `down` terminates the EC2 instance (seen from the cloud's side).
    ec2 = boto3.client("ec2", endpoint_url=aws.moto_url, region_name="us-east-1")
    ec2_id = replacement["instance_id"].rsplit("/", 1)[1]
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline and state != "terminated":
        (reservation,) = ec2.describe_instances(InstanceIds=[ec2_id])["Reservations"]
        state = reservation["Instances"][0]["State"]["Name"]
        time.sleep(0.2)
    assert state == "terminated", cloud_stack.logs_tail()
    # ... and, its last replica gone, the service's security group (nothing else of the VPC).
    groups: list[Any] = [None]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and groups:
        named = [{"Name": "group-name", "Values": ["stratus-a10g"]}]
        groups = ec2.describe_security_groups(Filters=named)["SecurityGroups"]
        time.sleep(0.2)
    assert groups == [], cloud_stack.logs_tail()
    default = [{"Name": "group-name", "Values": ["default"]}]
    assert ec2.describe_security_groups(Filters=default)["SecurityGroups"]


BOOT_SPEC = """\
service:
  readiness_probe: /
  replicas: 1
resources:
  cloud: aws
  region: us-east-1
  accelerators: A10G:1
  ports: {port}
envs:
  HF_TOKEN: {secret}
setup: echo "setup sees a token of $(printf %s "$HF_TOKEN" | wc -c) characters"
run: echo $$ > "$STRATUS_ROOT/run.pid"; exec python3 -m http.server {port} --bind 127.0.0.1
"""


def user_data(aws: EmulatedAws, ec2_id: str) -> str:
    ec2 = boto3.client("ec2", endpoint_url=aws.moto_url, region_name="us-east-1")
    attr = ec2.describe_instance_attribute(InstanceId=ec2_id, Attribute="userData")
    return gzip.decompress(base64.b64decode(attr["UserData"]["Value"])).decode()


def test_the_user_data_boots_a_replica_that_gets_ready_serves_and_logs(
    cloud_stack: Stack, aws: EmulatedAws, tmp_path: Path
) -> None:
    """The emulated VM is this machine: the test runs the instance's user-data as cloud-init
    would (in a temp dir); it redeems its token at the real API, the prober finds it READY at the
    (loopback) address EC2 reports, the endpoint serves it, and its log reaches `stratus logs`."""
    aws.clear()
    port, secret = free_port(), f"hf_{uuid.uuid4().hex}"
    spec = tmp_path / "boot.yaml"
    spec.write_text(BOOT_SPEC.format(port=port, secret=secret))
    cloud_stack.cli("up", str(spec), "-n", "boot", "-y", "--detach", check=True)
    svc = cloud_stack.wait("boot", lambda s: bool(launched(s)), timeout=180, what="a launched replica")
    (replica,) = launched(svc)
    script = user_data(aws, replica["instance_id"].rsplit("/", 1)[1])
    assert secret not in script
    assert all(secret not in json.dumps(e) for e in cloud_stack.events("boot"))

    root, home = tmp_path / "vm-root", tmp_path / "vm-home"
    home.mkdir()
    (tmp_path / "user-data").write_text(script)
    env = {"PATH": os.environ["PATH"], "STRATUS_ROOT": str(root), "HOME": str(home)}
    try:
        done = subprocess.run(["bash", str(tmp_path / "user-data")], env=env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        svc = cloud_stack.wait(
            "boot", lambda s: any(r["status"] == "READY" for r in s["replicas"]), timeout=120,
            what="the cloud replica READY",
        )  # fmt: skip
        page = httpx.get(f"http://{svc['endpoint']}/", timeout=10)
        assert page.status_code == 200 and "Directory listing" in page.text
        deadline = time.monotonic() + 60
        logs = ""
        while time.monotonic() < deadline and "setup sees a token of" not in logs:
            logs = cloud_stack.cli("logs", "boot", str(replica["replica_id"]), "--no-follow").stdout
            time.sleep(0.5)
        assert f"setup sees a token of {len(secret)} characters" in logs, logs + cloud_stack.logs_tail()
        assert secret not in logs

        # The workload dies while its VM runs on: the VM's runner says so, and the monitor
        # records the exit with its code (EC2 alone would still say "running").
        os.kill(int((root / "run.pid").read_text()), signal.SIGTERM)
        deadline = time.monotonic() + 60
        exits: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not exits:
            exits = [e for e in cloud_stack.events("boot") if e["type"] == "ReplicaProcessExited"]
            time.sleep(0.5)
        assert exits and exits[0]["data"]["instance_id"] == replica["instance_id"], cloud_stack.logs_tail()
        assert exits[0]["data"]["exit_code"] == 143  # bash's code for a child killed by SIGTERM
    finally:
        pid_file = root / "replica.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    cloud_stack.cli("down", "boot", "-y", check=True)
