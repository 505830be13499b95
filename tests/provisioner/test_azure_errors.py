"""ARM errors injected at the HTTP layer reach the provisioner as the right ``clouds.errors`` kind,
and a failed launch leaves nothing behind. Through the real SDK clients and the fake ARM."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError

from libs.events.types import Placement
from services.provisioner.clouds.azure import AzureProvider
from services.provisioner.clouds.azure_config import AzureConfig
from services.provisioner.clouds.base import LaunchTask
from services.provisioner.clouds.errors import (
    AuthError,
    CapacityError,
    LaunchError,
    ProviderError,
    QuotaError,
    TransientError,
)
from tests.fakes.azure_server import FakeArm, StaticCredential, running_fake_arm

SUB = "00000000-0000-0000-0000-0000000000ef"
SPOT = Placement(cloud="azure", region="eastus", instance_type="Standard_NC24ads_A100_v4", use_spot=True)
TASK = LaunchTask(service="llm", replica_id=1, service_port=8080, run="python3 -m http.server 8080")
QUOTA_MESSAGE = (
    "Operation could not be completed as it results in exceeding approved standardNCADSA100v4Family "
    "Cores quota. Location: eastus, Current Limit: 0, Current Usage: 0, Additional Required: 24"
)


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[FakeArm]:
    with running_fake_arm(tmp_path) as fake:
        yield fake
    assert not fake.bugs, fake.bugs


@pytest.fixture
async def provider_for(arm: FakeArm) -> AsyncIterator[Callable[..., AzureProvider]]:
    made: list[AzureProvider] = []

    def make(credential: Any = None, base_url: str | None = None, **settings: Any) -> AzureProvider:
        config = AzureConfig(
            **{
                "source_ranges": ("198.51.100.0/24",), "ssh_public_key": "ssh-ed25519 AAAA test",
                "poll_interval_s": 0.01, "retry_total": 0, **settings,
            }
        )  # fmt: skip
        provider = AzureProvider(
            SUB, credential or StaticCredential(), config=config, base_url=base_url or arm.base_url,
            connection_verify=arm.ca_path,
        )  # fmt: skip
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


def leftovers(arm: FakeArm) -> list[str]:
    """Resources other than the region's resource group, VNet and subnet."""
    shared = ("Microsoft.Resources/resourceGroups", "Microsoft.Network/virtualNetworks")
    return sorted(r["id"] for r in arm.resources.values() if not r["type"].startswith(shared))


# (code, HTTP status, message, failure on the async operation rather than the PUT, expected error)
CASES: list[tuple[str, int, str, bool, type[ProviderError]]] = [
    ("SkuNotAvailable", 409, "", False, CapacityError),
    ("AllocationFailed", 200, "", True, CapacityError),
    ("ZonalAllocationFailed", 200, "", True, CapacityError),
    ("OverconstrainedAllocationRequest", 200, "", True, CapacityError),
    ("OverconstrainedZonalAllocationRequest", 409, "", False, CapacityError),
    ("QuotaExceeded", 409, "", False, QuotaError),
    ("OperationNotAllowed", 409, QUOTA_MESSAGE, False, QuotaError),
    ("OperationNotAllowed", 409, "The VM size is not supported for Spot", False, LaunchError),
    ("AuthorizationFailed", 403, "", False, AuthError),
    ("InvalidAuthenticationToken", 401, "", False, AuthError),
    ("TooManyRequests", 429, "", False, TransientError),
    ("ServerBusy", 503, "", False, TransientError),
    ("InternalExecutionError", 500, "", True, TransientError),
    ("InvalidParameter", 400, "", False, LaunchError),
]


@pytest.mark.parametrize(("code", "status", "message", "on_operation", "expected"), CASES)
async def test_vm_creation_errors_are_translated_and_leave_nothing_behind(
    arm: FakeArm, provider_for: Callable[..., AzureProvider], code: str, status: int, message: str,
    on_operation: bool, expected: type[ProviderError],
) -> None:  # fmt: skip
    arm.inject(code, status=status, message=message, on_operation=on_operation, region="eastus")
    with pytest.raises(ProviderError) as info:
        await provider_for().launch(SPOT, TASK)
    assert type(info.value) is expected, info.value
    assert code in str(info.value) and "create VM" in str(info.value)
    assert leftovers(arm) == []


async def test_faults_are_per_region_so_another_region_still_launches(
    arm: FakeArm, provider_for: Callable[..., AzureProvider]
) -> None:
    arm.inject("AllocationFailed", on_operation=True, region="eastus")
    provider = provider_for()
    with pytest.raises(CapacityError):
        await provider.launch(SPOT, TASK)
    inst = await provider.launch(
        Placement(cloud="azure", region="westus2", instance_type=SPOT.instance_type), TASK
    )
    assert inst.instance_id.startswith("stratus-westus2/")


async def test_a_network_failure_midway_is_translated_and_cleaned_up(
    arm: FakeArm, provider_for: Callable[..., AzureProvider]
) -> None:
    arm.inject("InvalidRequestFormat", status=400, resource_type="networkInterfaces")
    with pytest.raises(LaunchError, match="create NIC"):
        await provider_for().launch(SPOT, TASK)
    assert leftovers(arm) == []  # the NSG and public IP made before it are gone again


async def test_public_ips_used_up_in_a_region_is_a_quota_error(
    arm: FakeArm, provider_for: Callable[..., AzureProvider]
) -> None:
    arm.inject("PublicIPCountLimitReached", status=400, resource_type="publicIPAddresses", region="eastus")
    with pytest.raises(QuotaError, match="create public IP"):
        await provider_for().launch(SPOT, TASK)
    assert leftovers(arm) == []


async def test_missing_credentials_are_auth_errors_and_disable_the_check(
    arm: FakeArm, provider_for: Callable[..., AzureProvider]
) -> None:
    provider = provider_for(StaticCredential(ClientAuthenticationError("DefaultAzureCredential failed")))
    with pytest.raises(AuthError, match="az login"):
        await provider.launch(SPOT, TASK)
    check = await provider.check()
    assert not check.enabled and "DefaultAzureCredential failed" in check.reason
    assert "AZURE_SUBSCRIPTION_ID" in check.hint
    assert arm.requests == []


async def test_a_subscription_the_identity_may_not_read_disables_the_check(
    arm: FakeArm, provider_for: Callable[..., AzureProvider]
) -> None:
    arm.inject("AuthorizationFailed", status=403, method="GET", resource_type="resourcegroups")
    check = await provider_for().check()
    assert not check.enabled and "AuthorizationFailed" in check.reason


async def test_an_unreachable_endpoint_is_transient(provider_for: Callable[..., AzureProvider]) -> None:
    provider = provider_for(base_url="https://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(TransientError, match="cannot reach"):
        await provider.status("stratus-eastus/stratus-llm-1-abcdef")
    check = await provider.check()
    assert not check.enabled and "management.azure.com" in check.hint


async def test_a_creation_that_does_not_finish_in_time_is_transient_and_cleaned_up(
    arm: FakeArm, provider_for: Callable[..., AzureProvider]
) -> None:
    arm.hold_operations = True
    provider = provider_for(operation_timeout_s=0.5)
    with pytest.raises(TransientError, match=r"not finished after 0\.5 s"):
        await provider.launch(SPOT, TASK)
    assert leftovers(arm) == []
