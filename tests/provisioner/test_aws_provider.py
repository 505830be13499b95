"""The AWS provider against emulated AWS: real boto3 over real HTTP to moto in server mode,
behind a proxy that injects EC2's real error answers and spot interruptions."""

from __future__ import annotations

import base64
import gzip
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import pytest

from libs.events.types import Placement
from libs.servers.ports import free_port
from services.provisioner.clouds.aws import AwsProvider
from services.provisioner.clouds.base import Bootstrap, InstanceState, LaunchTask
from services.provisioner.clouds.errors import (
    AuthError,
    CapacityError,
    LaunchError,
    ProviderError,
    QuotaError,
    TransientError,
)
from services.provisioner.clouds.startup import render_startup_script
from tests.fakes.aws_ec2 import EmulatedAws, emulated_aws

CIDR = "198.51.100.7/32"
SECRET = "hf_secret_value_0123456789"


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}  # fmt: skip


@pytest.fixture(scope="module")
def emulated() -> Iterator[EmulatedAws]:
    with pytest.MonkeyPatch.context() as mp:
        for var, value in AWS_ENV.items():
            mp.setenv(var, value)
        mp.delenv("AWS_PROFILE", raising=False)
        with emulated_aws() as aws:
            aws.session = boto3.Session()  # its loaded service models are reused by every provider
            yield aws


@pytest.fixture
def aws(emulated: EmulatedAws, monkeypatch: pytest.MonkeyPatch) -> EmulatedAws:
    for var, value in AWS_ENV.items():
        monkeypatch.setenv(var, value)
    emulated.clear()
    return emulated


@pytest.fixture
def svc() -> str:
    """A service name of this test's own (moto's account is shared by the module's tests)."""
    return f"llm-{uuid.uuid4().hex[:8]}"


def make_provider(aws: EmulatedAws, **kw: Any) -> AwsProvider:
    options: dict[str, Any] = {
        "ingress_cidr": CIDR, "regions": ["us-east-1"], "max_attempts": 1, "session": aws.session,
    }  # fmt: skip
    options.update(kw)
    return AwsProvider(endpoint_url=aws.endpoint_url, **options)


@pytest.fixture
async def provider(aws: EmulatedAws) -> AsyncIterator[AwsProvider]:
    p = make_provider(aws)
    yield p
    await p.close()


def ec2(aws: EmulatedAws, region: str = "us-east-1") -> Any:
    """A client straight to moto (not through our provider): what the cloud's console would show."""
    return aws.session.client("ec2", endpoint_url=aws.moto_url, region_name=region)


def task(svc: str, replica_id: int = 1, **kw: Any) -> LaunchTask:
    fields: dict[str, Any] = {
        "service": svc, "replica_id": replica_id, "version": 2, "service_port": 8080,
        "run": "serve --port 8080", "setup": "pip install x",
        "envs": {"MODEL": "mixtral", "HF_TOKEN": SECRET},
        "secret_names": ["HF_TOKEN"], "ports": [8080, 9000], "num_gpus": 1,
        "bootstrap": Bootstrap(url="https://203.0.113.1:8765/v1/bootstrap", token="one-time-token"),
    }  # fmt: skip
    fields.update(kw)
    return LaunchTask(**fields)


def placement(zone: str = "use1-az1", *, spot: bool = False, **kw: Any) -> Placement:
    return Placement(
        cloud="aws", region="us-east-1", zone=zone, instance_type="g5.xlarge", use_spot=spot, **kw
    )


def zone_names(aws: EmulatedAws) -> dict[str, str]:
    zones = ec2(aws).describe_availability_zones()["AvailabilityZones"]
    return {z["ZoneId"]: z["ZoneName"] for z in zones}


def describe(aws: EmulatedAws, ec2_id: str) -> dict[str, Any]:
    found = ec2(aws).describe_instances(InstanceIds=[ec2_id])
    desc: dict[str, Any] = found["Reservations"][0]["Instances"][0]
    return desc


async def test_on_demand_launch_runs_the_startup_script_in_the_zone_with_tags(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    t = task(svc)
    inst = await provider.launch(placement("use1-az1"), t)
    ec2_id = inst.details["ec2_instance_id"]
    assert inst.instance_id == f"us-east-1/{ec2_id}"
    desc = describe(aws, ec2_id)
    assert desc["InstanceType"] == "g5.xlarge"
    assert desc["Placement"]["AvailabilityZone"] == zone_names(aws)["use1-az1"]
    assert desc.get("InstanceLifecycle") != "spot"
    assert inst.url == f"http://{desc['PublicIpAddress']}:8080"
    tags = {x["Key"]: x["Value"] for x in desc["Tags"]}
    assert {k: tags[k] for k in ("stratus:service", "stratus:replica-id", "stratus:version")} == {
        "stratus:service": svc, "stratus:replica-id": "1", "stratus:version": "2",
    }  # fmt: skip

    (run,) = aws.actions("RunInstances")
    assert "InstanceMarketOptions.MarketType" not in run
    assert run["MetadataOptions.HttpTokens"] == "required"
    assert "KeyName" not in run  # no SSH key: nothing else inbound
    user_data = gzip.decompress(base64.b64decode(run["UserData"])).decode()
    assert user_data == render_startup_script(t, cloud="aws")
    assert SECRET not in user_data and "one-time-token" in user_data
    # Where the cloud shows it: the instance's user-data attribute.
    attr = ec2(aws).describe_instance_attribute(InstanceId=ec2_id, Attribute="userData")
    assert SECRET.encode() not in gzip.decompress(base64.b64decode(attr["UserData"]["Value"]))
    status = await provider.status(inst.instance_id)
    assert status.state == InstanceState.RUNNING


async def test_spot_launch_is_a_one_time_request_that_terminates_on_interruption(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    inst = await provider.launch(placement("use1-az2", spot=True), task(svc))
    (run,) = aws.actions("RunInstances")
    assert run["InstanceMarketOptions.MarketType"] == "spot"
    assert run["InstanceMarketOptions.SpotOptions.SpotInstanceType"] == "one-time"
    assert run["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == "terminate"
    assert describe(aws, inst.details["ec2_instance_id"])["InstanceLifecycle"] == "spot"
    assert inst.placement.use_spot


async def test_a_spot_interruption_is_preempted_and_our_terminate_is_terminated(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    spot = await provider.launch(placement(spot=True), task(svc, 1))
    mine = await provider.launch(placement(), task(svc, 2))
    aws.interrupt(spot.details["ec2_instance_id"])
    got = await provider.status(spot.instance_id)
    assert got.state == InstanceState.PREEMPTED and "SpotInstanceTermination" in got.detail
    await provider.terminate(mine.instance_id)
    assert (await provider.status(mine.instance_id)).state == InstanceState.TERMINATED
    assert (await provider.status("us-east-1/i-0123456789abcdef0")).state == InstanceState.NOT_FOUND
    assert (await provider.status("not-an-aws-id")).state == InstanceState.NOT_FOUND


async def test_terminate_is_idempotent(svc: str, aws: EmulatedAws, provider: AwsProvider) -> None:
    inst = await provider.launch(placement(), task(svc))
    await provider.terminate(inst.instance_id)
    await provider.terminate(inst.instance_id)
    await provider.terminate("us-east-1/i-0123456789abcdef0")
    await provider.terminate("garbage")
    assert describe(aws, inst.details["ec2_instance_id"])["State"]["Name"] == "terminated"


async def test_a_restarted_provider_rediscovers_its_instances_by_tag(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    a = await provider.launch(placement(spot=True), task(svc, 1))
    b = await provider.launch(placement("use1-az2"), task(svc, 2))
    other = await provider.launch(placement(), task(svc, 1, service=f"{svc}-other"))
    gone = await provider.launch(placement(), task(svc, 3))
    await provider.terminate(gone.instance_id)
    # Someone's instance without our tags is none of our business.
    ec2(aws).run_instances(ImageId=a.details["image_id"], MinCount=1, MaxCount=1, InstanceType="t3.micro")

    restarted = make_provider(aws)
    found = {i.instance_id: i for i in await restarted.list_instances(svc)}
    assert set(found) == {a.instance_id, b.instance_id}
    assert (found[a.instance_id].replica_id, found[a.instance_id].url) == (1, a.url)
    assert found[a.instance_id].placement.use_spot and not found[b.instance_id].placement.use_spot
    assert found[b.instance_id].placement.zone == zone_names(aws)["use1-az2"]
    every = {i.instance_id for i in await restarted.list_instances() if i.service.startswith(svc)}
    assert every == {a.instance_id, b.instance_id, other.instance_id}


def ingress(aws: EmulatedAws, service: str) -> set[tuple[str, int, int, str]]:
    groups = ec2(aws).describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"stratus-{service}"]}]
    )
    (group,) = groups["SecurityGroups"]
    return {
        (p["IpProtocol"], p["FromPort"], p["ToPort"], r["CidrIp"])
        for p in group["IpPermissions"]
        for r in p["IpRanges"]
    }


async def test_the_security_group_opens_only_the_service_log_and_asked_ports_to_the_cidr(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    inst = await provider.launch(placement(), task(svc))
    assert ingress(aws, svc) == {
        ("tcp", 8080, 8080, CIDR),
        ("tcp", 8181, 8181, CIDR),
        ("tcp", 9000, 9000, CIDR),
    }
    groups = describe(aws, inst.details["ec2_instance_id"])["SecurityGroups"]
    assert [g["GroupName"] for g in groups] == [f"stratus-{svc}"]
    # A new CIDR replaces the old rules rather than adding to them.
    moved = make_provider(aws, ingress_cidr="192.0.2.0/24")
    await moved.launch(placement(), task(svc, 2, ports=[8080]))
    assert ingress(aws, svc) == {("tcp", 8080, 8080, "192.0.2.0/24"), ("tcp", 8181, 8181, "192.0.2.0/24")}


async def test_without_a_cidr_public_launches_are_refused_and_private_ones_use_the_vpc(
    svc: str,
    aws: EmulatedAws,
) -> None:
    with pytest.raises(LaunchError, match="STRATUS_CLOUD_INGRESS_CIDR"):
        await make_provider(aws, ingress_cidr="").launch(placement(), task(svc))
    assert aws.actions("RunInstances") == []
    private = make_provider(aws, ingress_cidr="", address="private")
    inst = await private.launch(placement(), task(svc))
    vpc = ec2(aws).describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    assert {r[3] for r in ingress(aws, svc)} == {vpc["CidrBlock"]}
    assert inst.url == f"http://{describe(aws, inst.details['ec2_instance_id'])['PrivateIpAddress']}:8080"


async def test_image_id_overrides_the_default_and_a_missing_one_is_named(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    default = await provider.launch(placement(), task(svc, 1))
    assert (
        "Deep Learning"
        in (ec2(aws).describe_images(ImageIds=[default.details["image_id"]])["Images"][0]["Name"])
    )
    cpu = await provider.launch(placement(), task(svc, 2, num_gpus=0))
    assert "ubuntu" in ec2(aws).describe_images(ImageIds=[cpu.details["image_id"]])["Images"][0]["Name"]
    chosen = await provider.launch(placement(), task(svc, 3, image_id={"us-east-1": "ami-785db401"}))
    assert chosen.details["image_id"] == "ami-785db401"
    with pytest.raises(LaunchError, match="'ami-00000000deadbeef0' does not exist"):
        await provider.launch(placement(), task(svc, 4, image_id="ami-00000000deadbeef0"))


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("InsufficientInstanceCapacity", 500, CapacityError),
        ("InsufficientCapacity", 500, CapacityError),
        ("Unsupported", 400, CapacityError),
        ("InstanceLimitExceeded", 400, QuotaError),
        ("VcpuLimitExceeded", 400, QuotaError),
        ("MaxSpotInstanceCountExceeded", 400, QuotaError),
        ("AuthFailure", 401, AuthError),
        ("UnauthorizedOperation", 403, AuthError),
        ("InvalidClientTokenId", 403, AuthError),
        ("RequestLimitExceeded", 503, TransientError),
        ("Throttling", 400, TransientError),
        ("InternalError", 500, TransientError),
        ("InvalidParameterValue", 400, LaunchError),
    ],
)
async def test_ec2_errors_are_translated_from_their_codes(
    svc: str, aws: EmulatedAws, provider: AwsProvider, code: str, status: int, expected: type[ProviderError]
) -> None:
    message = "Your requested instance type is not supported in your requested Availability Zone"
    aws.fail_run(code, message if code == "Unsupported" else "", status=status)
    with pytest.raises(ProviderError) as info:
        await provider.launch(placement(), task(svc))
    assert type(info.value) is expected
    assert code in str(info.value)


async def test_capacity_errors_in_one_zone_leave_the_others_usable(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    names = zone_names(aws)
    aws.fail_run("InsufficientInstanceCapacity", "We currently do not have sufficient g5.xlarge capacity",
                 zone=names["use1-az1"])  # fmt: skip
    with pytest.raises(CapacityError, match="try another zone"):
        await provider.launch(placement("use1-az1"), task(svc))
    inst = await provider.launch(placement("use1-az2"), task(svc))
    assert inst.details["zone"] == names["use1-az2"]


async def test_an_unreachable_endpoint_is_transient_and_bad_placements_are_named(
    svc: str, aws: EmulatedAws
) -> None:
    dead = AwsProvider(
        endpoint_url=f"http://127.0.0.1:{free_port()}", ingress_cidr=CIDR, max_attempts=1, session=aws.session
    )
    with pytest.raises(TransientError, match="cannot reach"):
        await dead.launch(placement(), task(svc))
    live = make_provider(aws)
    with pytest.raises(CapacityError, match="not a zone of us-east-1"):
        await live.launch(placement("usw2-az9"), task(svc))
    with pytest.raises(LaunchError, match="needs a region"):
        await live.launch(Placement(cloud="aws", region="local", instance_type="g5.xlarge"), task(svc))
    with pytest.raises(LaunchError, match="bootstrap token"):
        await live.launch(placement(), task(svc, bootstrap=None, envs={}, secret_names=[]))


async def test_check_reports_the_account(provider: AwsProvider) -> None:
    got = await provider.check()
    assert got.enabled and got.reason == "account 123456789012"


async def test_a_repeated_launch_returns_the_instance_it_already_started(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    first = await provider.launch(placement(), task(svc, 1))
    # The same replica again (a redelivered message): same ClientToken, new bootstrap token,
    # which EC2 refuses as IdempotentParameterMismatch; the provider finds the first instance.
    aws.fail_run("IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent",
                 status=400, times=1)  # fmt: skip
    again = await provider.launch(
        placement(), task(svc, 1, bootstrap=Bootstrap(url="https://x/v1/bootstrap", token="t2"))
    )
    assert again.instance_id == first.instance_id
    assert len(aws.actions("RunInstances")) == 2
    # With no such instance the error stands.
    aws.fail_run("IdempotentParameterMismatch", "inconsistent", status=400, times=1)
    with pytest.raises(LaunchError, match="IdempotentParameterMismatch"):
        await provider.launch(placement(), task(svc, 2))
