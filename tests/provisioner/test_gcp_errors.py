"""GCP failures injected at the HTTP layer reach the provider as the right ProviderError.

Capacity mostly arrives on the insert *Operation* (accepted, then DONE with
ZONE_RESOURCE_POOL_EXHAUSTED and httpErrorStatusCode 503); quota, auth and throttling mostly
on the call itself. Faults are per zone, so a neighbouring zone still launches.
"""

from __future__ import annotations

import pytest

from services.provisioner.clouds.errors import (
    AuthError,
    CapacityError,
    LaunchError,
    ProviderError,
    QuotaError,
    TransientError,
)
from tests.fakes.gcp_server import FakeCompute

from .gcp_fixtures import fake, inserted, make_provider, placement, task

__all__ = ["fake"]

OPERATION_FAULTS = [
    (503, "ZONE_RESOURCE_POOL_EXHAUSTED", CapacityError),
    (503, "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", CapacityError),
    (403, "QUOTA_EXCEEDED", QuotaError),
    (500, "INTERNAL_ERROR", TransientError),
    (400, "UNSUPPORTED_OPERATION", LaunchError),
]
CALL_FAULTS = [
    (503, "resourcePoolExhausted", CapacityError),
    (403, "quotaExceeded", QuotaError),
    (403, "rateLimitExceeded", TransientError),
    (429, "rateLimitExceeded", TransientError),
    (401, "authError", AuthError),
    (403, "forbidden", AuthError),
    (503, "backendError", TransientError),
    (400, "invalid", LaunchError),
]


@pytest.mark.parametrize(("status", "code", "expected"), OPERATION_FAULTS)
async def test_operation_errors_are_translated_and_stay_in_their_zone(
    fake: FakeCompute, status: int, code: str, expected: type[ProviderError]
) -> None:
    fake.inject("insert", "us-central1-a", status, code, f"{code} in us-central1-a", on_operation=True)
    provider = make_provider(fake)
    with pytest.raises(expected) as info:
        await provider.launch(placement("us-central1-a"), task())
    assert type(info.value) is expected and code in str(info.value)
    assert fake.instances == {}  # the operation failed: no VM was made
    inst = await provider.launch(placement("us-central1-b"), task())
    assert inst.placement.zone == "us-central1-b" and len(fake.instances) == 1
    await provider.close()


@pytest.mark.parametrize(("status", "reason", "expected"), CALL_FAULTS)
async def test_call_errors_are_translated(
    fake: FakeCompute, status: int, reason: str, expected: type[ProviderError]
) -> None:
    fake.inject("insert", "us-central1-a", status, reason)
    provider = make_provider(fake)
    with pytest.raises(expected) as info:
        await provider.launch(placement("us-central1-a"), task())
    assert type(info.value) is expected
    # On a 401 the SDK first tries to refresh the credentials; anonymous ones cannot be.
    assert reason in str(info.value) or (status == 401 and "credentials" in str(info.value))
    assert len(inserted(fake)) == 1 and fake.instances == {}
    await provider.close()


async def test_a_transient_fault_passes_and_the_same_launch_then_succeeds(fake: FakeCompute) -> None:
    fake.inject("insert", "*", 503, "backendError", times=1)
    provider = make_provider(fake)
    with pytest.raises(TransientError):
        await provider.launch(placement(), task())
    inst = await provider.launch(placement(), task())
    assert inst.instance_id in {f"{z}/{n}" for z, n in fake.instances}
    await provider.close()


async def test_firewall_permission_denied_is_an_auth_error_and_no_vm_is_made(fake: FakeCompute) -> None:
    fake.inject("firewall", "*", 403, "forbidden", "Required 'compute.firewalls.create' permission")
    provider = make_provider(fake)
    with pytest.raises(AuthError, match=r"compute\.firewalls\.create"):
        await provider.launch(placement(), task())
    assert inserted(fake) == []
    await provider.close()


async def test_check_reports_rejected_credentials_with_what_to_do(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    ok = await provider.check()
    assert ok.enabled and ok.cloud == "gcp" and "stratus-test" in ok.reason
    denied = "Required 'compute.instances.list' permission for 'projects/stratus-test'"
    fake.inject("*", "*", 403, "forbidden", denied, times=1)
    bad = await provider.check()
    assert not bad.enabled and denied in bad.reason
    assert "gcloud auth application-default login" in bad.hint
    fake.inject("*", "*", 401, "authError", "Request had invalid authentication credentials.")
    unauthenticated = await provider.check()
    assert not unauthenticated.enabled and "credentials" in unauthenticated.reason
    assert "gcloud auth application-default login" in unauthenticated.hint
    await provider.close()


async def test_unreachable_api_is_transient() -> None:
    with FakeCompute().serving() as gone:
        provider = make_provider(gone)
    # The server is shut down: nothing listens on its port now.
    with pytest.raises(TransientError, match="list instances"):
        await provider.list_instances()
    await provider.close()


async def test_a_launch_whose_operation_never_ends_gives_up_and_deletes_the_vm(fake: FakeCompute) -> None:
    fake.hold_operations = True
    provider = make_provider(fake, operation_timeout_s=1.5)
    with pytest.raises(TransientError, match="not done after"):
        await provider.launch(placement(), task())
    [body] = inserted(fake)
    assert fake.instances == {}  # deleted rather than leaked
    assert any(r.method == "DELETE" and r.path.endswith(f"/instances/{body['name']}") for r in fake.requests)
    waits = [r for r in fake.requests if r.path.endswith("/wait")]
    assert 2 <= len(waits) <= 5  # polled, but spaced rather than in a tight loop
    await provider.close()
