"""The AWS provider's pure decisions, as tables: EC2 states -> InstanceState, error codes -> kinds."""

from __future__ import annotations

from typing import Any

import pytest

from services.provisioner.clouds.aws_errors import classify
from services.provisioner.clouds.aws_network import existing_rules, rule_changes, wanted_rules
from services.provisioner.clouds.aws_states import instance_status
from services.provisioner.clouds.base import InstanceState
from services.provisioner.clouds.errors import (
    AuthError,
    CapacityError,
    LaunchError,
    ProviderError,
    QuotaError,
    TransientError,
)


def desc(state: str, reason: str = "", lifecycle: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"State": {"Name": state}}
    if reason:
        d["StateReason"] = {"Code": reason, "Message": f"{reason}: why"}
    if lifecycle:
        d["InstanceLifecycle"] = lifecycle
    return d


@pytest.mark.parametrize(
    ("d", "spot_status", "expected"),
    [
        (desc("pending"), "", InstanceState.PROVISIONING),
        (desc("running"), "", InstanceState.RUNNING),
        (desc("running", lifecycle="spot"), "fulfilled", InstanceState.RUNNING),
        (desc("running", lifecycle="spot"), "marked-for-termination", InstanceState.PREEMPTED),
        (desc("shutting-down", "Server.SpotInstanceTermination", "spot"), "", InstanceState.PREEMPTED),
        (desc("terminated", "Server.SpotInstanceTermination", "spot"), "", InstanceState.PREEMPTED),
        (desc("terminated", "", "spot"), "instance-terminated-no-capacity", InstanceState.PREEMPTED),
        (desc("stopped", "Server.SpotInstanceShutdown", "spot"), "", InstanceState.PREEMPTED),
        (desc("terminated", "Client.UserInitiatedShutdown"), "", InstanceState.TERMINATED),
        (desc("terminated", "Client.InstanceInitiatedShutdown"), "", InstanceState.EXITED),
        (desc("terminated", "Server.InternalError"), "", InstanceState.EXITED),
        (desc("stopped", "Client.UserInitiatedShutdown"), "", InstanceState.TERMINATED),
        (desc("weird"), "", InstanceState.NOT_FOUND),
    ],
)
def test_instance_status(d: dict[str, Any], spot_status: str, expected: InstanceState) -> None:
    assert instance_status(d, spot_status).state == expected


@pytest.mark.parametrize(
    ("code", "status", "message", "expected"),
    [
        ("InsufficientInstanceCapacity", 500, "", CapacityError),
        ("InsufficientHostCapacity", 500, "", CapacityError),
        ("SpotMaxPriceTooLow", 400, "", CapacityError),
        ("Unsupported", 400, "not supported in your requested Availability Zone", CapacityError),
        ("Unsupported", 400, "The requested configuration is currently not supported", LaunchError),
        ("VcpuLimitExceeded", 400, "", QuotaError),
        ("MaxSpotInstanceCountExceeded", 400, "", QuotaError),
        ("InstanceLimitExceeded", 400, "", QuotaError),
        ("AuthFailure", 401, "", AuthError),
        ("OptInRequired", 401, "", AuthError),
        ("SomethingNew", 403, "", AuthError),
        ("RequestLimitExceeded", 503, "", TransientError),
        ("ThrottlingException", 400, "", TransientError),
        ("SomethingNew", 502, "", TransientError),
        ("InvalidAMIID.NotFound", 400, "", LaunchError),
    ],
)
def test_classify(code: str, status: int, message: str, expected: type[ProviderError]) -> None:
    assert classify(code, status, message) is expected


def test_rule_changes_replace_what_is_not_wanted() -> None:
    group = {
        "IpPermissions": [
            {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        ]
    }
    want = wanted_rules([8080, 8181], "203.0.113.7")
    assert want == {(8080, "203.0.113.7/32"), (8181, "203.0.113.7/32")}
    add, remove = rule_changes(existing_rules(group), want)
    assert add == want and remove == {(8080, "10.0.0.0/8"), (22, "0.0.0.0/0")}
    with pytest.raises(LaunchError, match="STRATUS_CLOUD_INGRESS_CIDR"):
        wanted_rules([80], "not-a-cidr")
