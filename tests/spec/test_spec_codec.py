"""spec_to_dict / spec_from_dict: the JSON form events carry, without secrets."""

from __future__ import annotations

import json

import msgspec
import pytest
from spec_helpers import DELETE, variant

from libs.spec import SpecValidationError, load_spec, spec_from_dict, spec_to_dict

SERVICE_KEYS = {
    "readiness_path", "initial_delay_seconds", "readiness_timeout_seconds", "post_data", "headers",
    "min_replicas", "max_replicas", "target_qps_per_replica", "upscale_delay_seconds",
    "downscale_delay_seconds", "num_overprovision", "base_ondemand_fallback_replicas",
    "dynamic_ondemand_fallback", "spot_placer", "load_balancing_policy", "ports", "tls",
    "endpoint_probe_interval_seconds", "consecutive_failure_threshold_timeout", "stream_timeout_seconds",
}  # fmt: skip


def _spec_with_secret() -> str:
    return variant(
        envs={"MODEL": "m"},
        secrets={"HF_TOKEN": "hf_secret_value"},
        resources={"ports": 8080, "accelerators": {"L4:1": None, "A100:1": None}, "use_spot": True},
    )


def test_json_shape_uses_skyserve_names() -> None:
    out = spec_to_dict(load_spec(_spec_with_secret()))
    assert set(out) == {
        "name",
        "service",
        "resources",
        "envs",
        "secrets",
        "setup",
        "run",
        "workdir",
        "file_mounts",
        "num_nodes",
    }
    assert set(out["service"]) == SERVICE_KEYS
    assert out["service"]["ports"] == 8080
    assert {"ports", "accelerators", "cpus", "memory", "use_spot", "cloud", "region", "zone", "disk_size",
            "disk_tier", "any_of", "ordered"} <= set(out["resources"])  # fmt: skip
    json.dumps(out)  # JSON-able as is


def test_secrets_redacted_by_default() -> None:
    spec = load_spec(_spec_with_secret())
    out = spec_to_dict(spec)
    assert out["secrets"] == {"HF_TOKEN": "<redacted>"}
    assert "hf_secret_value" not in json.dumps(out)
    assert spec_to_dict(spec, include_secrets=True)["secrets"] == {"HF_TOKEN": "hf_secret_value"}
    assert "hf_secret_value" not in repr(spec)


def test_round_trip() -> None:
    spec = load_spec(
        variant(
            service__replicas=DELETE,
            service__ports=8081,
            service__replica_policy={"min_replicas": 1, "max_replicas": 3, "target_qps_per_replica": 1.5},
            service__readiness_probe={"path": "/v1/models", "post_data": {"a": [1, {"b": None}]}},
            service__tls={"keyfile": "k", "certfile": "c"},
            resources={"ports": "8080-8081", "any_of": [{"cloud": "aws"}, {"cloud": "gcp"}]},
            file_mounts={"/m": {"name": "bucket", "mode": "COPY"}},
        )
    )
    data = spec_to_dict(spec, include_secrets=True)
    assert spec_from_dict(data) == spec
    assert spec_from_dict(json.loads(json.dumps(data))) == spec
    redacted = spec_from_dict(spec_to_dict(spec))
    assert msgspec.structs.replace(redacted, secrets=spec.secrets) == spec


def test_from_dict_reports_wrong_types_by_path() -> None:
    data = spec_to_dict(load_spec(variant()))
    data["service"]["min_replicas"] = "two"
    with pytest.raises(SpecValidationError) as info:
        spec_from_dict(data)
    assert info.value.issues[0].path == "service.min_replicas"


def test_from_dict_rechecks_cross_field_rules() -> None:
    data = spec_to_dict(load_spec(variant()))
    data["service"]["ports"] = 9999
    data["service"]["max_replicas"] = 0
    with pytest.raises(SpecValidationError) as info:
        spec_from_dict(data)
    paths = {i.path for i in info.value.issues}
    assert {"service.ports", "service.replica_policy.max_replicas"} <= paths


def test_probe_header_values_are_redacted_in_the_dict_and_in_repr() -> None:
    spec = load_spec(
        variant(service__readiness_probe={"path": "/h", "headers": {"Authorization": "Bearer hdr-0451"}})
    )
    out = spec_to_dict(spec)
    assert out["service"]["headers"] == {"Authorization": "<redacted>"}
    full = spec_to_dict(spec, include_secrets=True)
    assert full["service"]["headers"] == {"Authorization": "Bearer hdr-0451"}
    assert "hdr-0451" not in repr(spec) and "Authorization" in repr(spec)
    assert "hdr-0451" not in repr(spec.readiness_probe)
    assert spec.readiness_probe.headers == {"Authorization": "Bearer hdr-0451"}
