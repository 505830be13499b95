from __future__ import annotations

from typing import Any

import pytest
from fleet_builders import spec
from msgspec.structs import replace

from libs.events.types import ServiceRequested
from libs.fleet import (
    AutoscalePolicy,
    ResourceRequest,
    fold_events,
    resource_requests,
    service_policy,
    split_spot_on_demand,
)
from libs.fleet.policy import target_qps_for
from libs.spec import decode_recorded_spec, load_spec, spec_to_dict


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
    # A mistyped field falls back to its default alone; its well-typed neighbours are kept.
    assert pol.probe.headers == {} and pol.probe.method == "POST"
    assert pol.autoscale.min_replicas == 1 and not pol.autoscale.autoscales
    assert pol.load_balancing_policy == "least_load"
    assert pol.resources == (ResourceRequest(),)


@pytest.mark.parametrize(
    "garbage",
    [None, [], "spec", 7, {"service": "x"}, {"service": {"min_replicas": -3, "max_replicas": -9}},
     {"resources": {"any_of": [1, {"cloud": 5}]}}, {"service": {"target_qps_per_replica": {"A100": "x"}}},
     {"service": {"initial_delay_seconds": float("nan"), "readiness_timeout_seconds": -1}}],
)  # fmt: skip
def test_recorded_garbage_never_raises(garbage: Any) -> None:
    pol = service_policy(garbage if isinstance(garbage, dict) else {"service": garbage})
    assert pol.autoscale.min_replicas >= 0 and pol.autoscale.max_replicas >= pol.autoscale.min_replicas
    assert pol.probe.timeout_seconds > 0 and pol.probe.initial_delay_seconds >= 0
    decode_recorded_spec(garbage)  # any object


def test_fold_decodes_the_spec_once_into_the_version() -> None:
    text = """
service:
  readiness_probe: {path: /health, endpoint_probe_interval_seconds: 2.5,
                    consecutive_failure_threshold_timeout: 30}
  replica_policy: {min_replicas: 1, max_replicas: 4, target_qps_per_replica: {A100: 8, "L4:1": 2}}
  load_balancing_policy: instance_aware_least_load
  load_balancer: {stream_timeout_seconds: 45.5}
resources: {ports: 8080, accelerators: {A100: 1, L4: 1}}
run: serve
"""
    spec_dict = spec_to_dict(load_spec(text))
    state = fold_events([(ServiceRequested(service="s", spec=spec_dict, version=1), 0.0)])
    info = state.services["s"].latest
    assert info.decoded is not None and info.typed == load_spec(text)
    pol = info.policy
    assert (pol.probe.interval_seconds, pol.probe.failure_threshold_seconds) == (2.5, 30.0)
    assert pol.probe.failure_threshold_from_spec
    assert pol.stream_timeout_seconds == 45.5 and pol.load_balancing_policy == "instance_aware_least_load"
    assert pol.autoscale.target_qps_per_accelerator == {"A100": 8.0, "L4:1": 2.0}
    assert pol.autoscale.target_qps_per_replica == 8.0 and pol.autoscale.autoscales
    assert [target_qps_for(pol.autoscale, a) for a in ("A100", "L4", "T4", None)] == [8.0, 2.0, 2.0, 2.0]


def test_skyserve_defaults_when_omitted() -> None:
    pol = service_policy(spec_to_dict(load_spec("service: {}\nresources: {ports: 8080}\nrun: x")))
    assert (pol.probe.path, pol.probe.interval_seconds, pol.stream_timeout_seconds) == ("/", 10.0, 120.0)
    assert not pol.probe.failure_threshold_from_spec and pol.probe.failure_threshold_seconds == 180
    assert (pol.autoscale.min_replicas, pol.autoscale.max_replicas) == (1, 1)


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
