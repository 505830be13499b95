from __future__ import annotations

from typing import Any

import pytest
from fleet_builders import spec
from msgspec.structs import replace

from libs.fleet import (
    AutoscalePolicy,
    ResourceRequest,
    resource_requests,
    service_policy,
    split_spot_on_demand,
)


def test_defaults_from_an_empty_spec() -> None:
    pol = service_policy({})
    assert pol.probe.path == "/" and pol.probe.initial_delay_seconds == 1200
    assert pol.probe.timeout_seconds == 15 and pol.probe.failure_threshold_seconds == 180
    assert pol.probe.method == "GET"
    assert (pol.autoscale.min_replicas, pol.autoscale.max_replicas, pol.autoscale.autoscales) == (1, 1, False)
    assert pol.resources == (ResourceRequest(),)
    assert pol.load_balancing_policy == "least_load"


def test_garbage_values_fall_back_to_defaults() -> None:
    pol = service_policy(
        {
            "service": {
                "readiness_path": 3,
                "initial_delay_seconds": "soon",
                "min_replicas": True,
                "max_replicas": None,
                "target_qps_per_replica": -1,
                "headers": {"X-A": 1},
                "post_data": {"q": 1},
                "load_balancing_policy": "random",
            },
            "resources": {"any_of": "nope", "ports": "8080"},
        }
    )
    assert pol.probe.path == "/" and pol.probe.initial_delay_seconds == 1200
    assert pol.probe.headers == {"X-A": "1"} and pol.probe.method == "POST"
    assert pol.autoscale.min_replicas == 1 and not pol.autoscale.autoscales
    assert pol.load_balancing_policy == "least_load"


def test_full_spec() -> None:
    pol = service_policy(spec(min_replicas=1, max_replicas=4, qps=2.5, use_spot=True, base_od=1, placer="x"))
    assert pol.autoscale.autoscales and pol.autoscale.uses_fallback and pol.use_spot
    assert pol.spot_placer == "x" and pol.port == 8080 and pol.probe.path == "/health"


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({}, [(None, None, False)]),
        ({"cloud": "aws", "accelerators": {"A100": 8}}, [("aws", {"A100": 8.0}, False)]),
        ({"accelerators": {"L4": 8, "A100": 4}, "use_spot": True}, [(None, {"L4": 8.0}, True),
                                                                     (None, {"A100": 4.0}, True)]),
        ({"accelerators": "A100:2"}, [(None, {"A100": 2.0}, False)]),
        ({"use_spot": True, "any_of": [{"cloud": "aws"}, {"cloud": "gcp", "use_spot": False}]},
         [("aws", None, True), ("gcp", None, False)]),
        ({"cloud": "aws", "any_of": [{"accelerators": {"A10G": 1}}, {"accelerators": {"L4": 1, "T4": 1}}]},
         [("aws", {"A10G": 1.0}, False), ("aws", {"L4": 1.0}, False), ("aws", {"T4": 1.0}, False)]),
    ],
)  # fmt: skip
def test_resource_requests(resources: dict[str, Any], expected: list[tuple[Any, ...]]) -> None:
    got = [(r.cloud, r.accelerators, r.use_spot) for r in resource_requests(resources)]
    assert got == expected


BASE = AutoscalePolicy(use_spot=True, base_ondemand_fallback_replicas=1)
DYN = replace(BASE, dynamic_ondemand_fallback=True)


@pytest.mark.parametrize(
    ("policy", "target", "ready_spot", "split"),
    [
        (AutoscalePolicy(), 3, 0, (0, 3)),
        (BASE, 3, 0, (2, 1)),
        (BASE, 0, 0, (0, 0)),
        (BASE, 1, 0, (0, 1)),
        (DYN, 3, 0, (2, 3)),
        (DYN, 3, 2, (2, 1)),
        (DYN, 3, 5, (2, 1)),
        (replace(DYN, base_ondemand_fallback_replicas=0), 2, 1, (2, 1)),
        (replace(DYN, num_overprovision=1), 4, 0, (3, 3)),
    ],
)
def test_split_spot_on_demand(
    policy: AutoscalePolicy, target: int, ready_spot: int, split: tuple[int, int]
) -> None:
    assert split_spot_on_demand(policy, target, ready_spot) == split
