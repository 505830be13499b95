"""The GCP provider's pure parts: error classes, names and labels, status, config (tables)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud import compute_v1

from libs.runtime.settings import Settings
from services.provisioner.clouds import gcp_names
from services.provisioner.clouds.base import InstanceState
from services.provisioner.clouds.errors import (
    AuthError,
    CapacityError,
    InstanceNotFound,
    LaunchError,
    ProviderError,
    QuotaError,
    TransientError,
)
from services.provisioner.clouds.gcp import GcpProvider
from services.provisioner.clouds.gcp_config import AUTO_MODE_VPC_RANGE, GcpConfig
from services.provisioner.clouds.gcp_errors import classify, operation_error
from services.provisioner.clouds.gcp_status import InstanceFacts, derive_status
from services.provisioner.clouds.registry import load_provider
from tests.fakes.gcp_server import FakeCompute

from .gcp_fixtures import fake, inserted, make_provider, placement, task

__all__ = ["fake"]


@pytest.mark.parametrize(
    ("codes", "status", "expected"),
    [
        (["ZONE_RESOURCE_POOL_EXHAUSTED"], 503, CapacityError),  # the code wins over the 503
        (["ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"], None, CapacityError),
        (["resourcePoolExhausted"], 503, CapacityError),
        (["stockout"], None, CapacityError),
        (["QUOTA_EXCEEDED"], 403, QuotaError),  # not auth although 403
        (["quotaExceeded"], 403, QuotaError),
        (["rateLimitExceeded"], 403, TransientError),  # refills in seconds: retry, do not fail over
        (["userRateLimitExceeded"], 403, TransientError),
        (["RESOURCE_OPERATION_RATE_EXCEEDED"], 403, TransientError),
        (["PERMISSION_DENIED"], None, AuthError),
        (["forbidden"], 403, AuthError),
        ([""], 401, AuthError),
        ([], 429, TransientError),
        ([], 500, TransientError),
        ([], 503, TransientError),
        ([], 408, TransientError),
        (["invalid"], 400, LaunchError),
        (["notFound"], 404, LaunchError),
    ],
)
def test_classify(codes: list[str], status: int | None, expected: type[ProviderError]) -> None:
    assert classify(codes, status) is expected


def test_operation_error_reads_codes_and_status() -> None:
    ok = compute_v1.Operation(name="op", status=compute_v1.Operation.Status.DONE)
    assert operation_error(ok, "insert") is None
    failed = compute_v1.Operation(
        name="op",
        http_error_status_code=503,
        error=compute_v1.Error(
            errors=[compute_v1.Errors(code="ZONE_RESOURCE_POOL_EXHAUSTED", message="no T4")]
        ),
    )
    error = operation_error(failed, "insert vm")
    assert isinstance(error, CapacityError) and "ZONE_RESOURCE_POOL_EXHAUSTED: no T4" in str(error)


@pytest.mark.parametrize(
    ("service", "label", "tag"),
    [
        ("llm", "llm", "stratus-llm"),
        ("My_Model.v2", "my_model-v2", "stratus-my-model-v2"),
        ("x" * 80, "x" * 63, "stratus-" + "x" * 55),
        ("--", "--", "stratus-x"),
    ],
)
def test_names_follow_gcp_rules(service: str, label: str, tag: str) -> None:
    assert gcp_names.label_value(service) == label
    assert gcp_names.service_tag(service) == tag
    name = gcp_names.instance_name(service, 12345, suffix="abcdef")
    assert len(name) <= 63 and name.endswith("-12345-abcdef")
    assert gcp_names.parse_instance_id(f"us-central1-a/{name}") == ("us-central1-a", name)
    assert len(gcp_names.firewall_name(service)) <= 63


@pytest.mark.parametrize("bad", ["", "i-0abc", "us-central1-a/", "zone/name", "us-central1-a/UPPER"])
def test_malformed_instance_ids_are_named(bad: str) -> None:
    with pytest.raises(InstanceNotFound, match="not a GCP instance id"):
        gcp_names.parse_instance_id(bad)


@pytest.mark.parametrize(
    ("facts", "state"),
    [
        (InstanceFacts(status="PROVISIONING", spot=True), InstanceState.PROVISIONING),
        (InstanceFacts(status="STAGING", spot=False), InstanceState.PROVISIONING),
        (InstanceFacts(status="REPAIRING", spot=False), InstanceState.PROVISIONING),
        (InstanceFacts(status="RUNNING", spot=True), InstanceState.RUNNING),
        (InstanceFacts(status="STOPPING", spot=True), InstanceState.PREEMPTED),
        (
            InstanceFacts(status="TERMINATED", spot=True, last_stop="2026-12-01T23:00:00Z"),
            InstanceState.PREEMPTED,
        ),
        (InstanceFacts(status="TERMINATED", spot=False), InstanceState.EXITED),
        (
            InstanceFacts(
                status="TERMINATED", spot=False, interruption="compute.instances.terminateOnHostMaintenance"
            ),
            InstanceState.PREEMPTED,
        ),
        (InstanceFacts(status="SUSPENDED", spot=False), InstanceState.EXITED),
        (InstanceFacts(status="TERMINATED", spot=True, deleting=True), InstanceState.TERMINATED),
        (InstanceFacts(status="RUNNING", spot=False, deleting=True), InstanceState.TERMINATED),
    ],
)
def test_derive_status(facts: InstanceFacts, state: InstanceState) -> None:
    assert derive_status(facts).state == state


def test_config_from_settings() -> None:
    config = GcpConfig.from_settings(
        Settings(cloud_address="private", cloud_ingress_cidr="203.0.113.7, 10.0.0.0/8", cloud_log_port=9191)
    )
    assert (config.address, config.source_ranges, config.log_port) == (
        "private",
        ("203.0.113.7/32", "10.0.0.0/8"),
        9191,
    )
    assert GcpConfig(address="private").ingress_ranges() == (AUTO_MODE_VPC_RANGE,)
    with pytest.raises(LaunchError, match="STRATUS_CLOUD_INGRESS_CIDR: 'nonsense'"):
        GcpConfig.from_settings(Settings(cloud_ingress_cidr="nonsense"))


async def test_public_launch_without_an_ingress_range_is_refused_before_any_call(fake: FakeCompute) -> None:
    provider = make_provider(fake, source_ranges=())
    with pytest.raises(LaunchError, match="STRATUS_CLOUD_INGRESS_CIDR"):
        await provider.launch(placement(), task())
    assert fake.requests == [] and inserted(fake) == []
    await provider.close()


async def test_private_launch_without_a_range_opens_the_ports_to_the_vpc_only(fake: FakeCompute) -> None:
    provider = make_provider(fake, source_ranges=(), address="private")
    await provider.launch(placement(), task())
    [rule] = fake.bodies("POST", r"/global/firewalls$")
    assert rule["sourceRanges"] == [AUTO_MODE_VPC_RANGE]
    await provider.close()


def _service_account_file(path: Path, project: str) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": f"stratus@{project}.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.write_text(json.dumps(info))
    return path


def test_from_settings_uses_adc_and_its_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.setenv(
        "GOOGLE_APPLICATION_CREDENTIALS", str(_service_account_file(tmp_path / "sa.json", "sa-proj"))
    )
    provider = GcpProvider.from_settings(Settings(cloud_ingress_cidr="203.0.113.7/32"))
    assert provider.project == "sa-proj"
    assert provider.config.source_ranges == ("203.0.113.7/32",)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-proj")  # the environment names the project
    assert GcpProvider.from_settings(Settings()).project == "env-proj"
    loaded = load_provider("gcp", Settings(cloud_address="private"))  # as the provisioner builds it
    assert isinstance(loaded, GcpProvider) and loaded.config.address == "private"


def test_from_settings_without_credentials_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(LaunchError, match="gcloud auth application-default login"):
        GcpProvider.from_settings(Settings())
