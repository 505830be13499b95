"""Valid forms, SkyServe's defaults and normalization, malformed YAML, error reporting."""

from __future__ import annotations

from typing import Any

import pytest
from spec_helpers import DELETE, variant

from libs.spec import (
    SpecError,
    SpecFileError,
    SpecSyntaxError,
    SpecValidationError,
    check_launchable,
    describe_resources,
    launch,
    load_spec,
    load_spec_file,
    spec_to_dict,
)


def test_skyserve_defaults() -> None:
    spec = load_spec(variant(service__replicas=DELETE))
    svc = spec.service
    assert (svc.min_replicas, svc.max_replicas, svc.target_qps_per_replica) == (1, 1, None)
    assert svc.initial_delay_seconds == 1200
    assert svc.readiness_timeout_seconds == 15
    assert (svc.upscale_delay_seconds, svc.downscale_delay_seconds) == (300, 1200)
    assert svc.load_balancing_policy == "least_load"
    assert (svc.num_overprovision, svc.base_ondemand_fallback_replicas) == (0, 0)
    assert svc.dynamic_ondemand_fallback is False
    assert svc.spot_placer is None and svc.tls is None
    assert svc.post_data is None and svc.headers == {}
    assert spec.readiness_probe.method == "GET"


def test_full_service_section() -> None:
    text = variant(
        service={
            "readiness_probe": {
                "path": "/v1/completions",
                "post_data": '{"model": "m", "max_tokens": 1}',
                "initial_delay_seconds": 0,
                "timeout_seconds": 30,
                "headers": {"Authorization": "Bearer x"},
            },
            "replica_policy": {
                "min_replicas": 1,
                "max_replicas": 5,
                "target_qps_per_replica": 3,
                "upscale_delay_seconds": 10,
                "downscale_delay_seconds": 20,
                "num_overprovision": 1,
                "base_ondemand_fallback_replicas": 1,
                "dynamic_ondemand_fallback": True,
                "spot_placer": "dynamic_fallback",
            },
            "load_balancing_policy": "round_robin",
            "ports": 8080,
            "tls": {"keyfile": "key.pem", "certfile": "cert.pem"},
        },
        resources={"ports": [8080, 9090], "use_spot": True},
    )
    spec = load_spec(text)
    svc = spec.service
    assert svc.post_data == {"model": "m", "max_tokens": 1}  # JSON string parsed
    assert spec.readiness_probe.timeout_seconds == 30
    assert svc.headers == {"Authorization": "Bearer x"}
    assert (svc.min_replicas, svc.max_replicas, svc.target_qps_per_replica) == (1, 5, 3.0)
    assert (svc.upscale_delay_seconds, svc.downscale_delay_seconds, svc.num_overprovision) == (10, 20, 1)
    assert svc.dynamic_ondemand_fallback and svc.spot_placer == "dynamic_fallback"
    assert svc.load_balancing_policy == "round_robin"
    assert spec.service_port == 8080
    assert svc.tls is not None and svc.tls.certfile == "cert.pem"


def test_min_replicas_alone_is_fixed() -> None:
    spec = load_spec(variant(service__replicas=DELETE, service__replica_policy={"min_replicas": 2}))
    assert (spec.min_replicas, spec.max_replicas, spec.is_autoscaling) == (2, 2, False)


@pytest.mark.parametrize(
    ("flow", "expected", "ordered"),
    [
        ("A100:8", [{"A100": 8}], False),
        ("A100", [{"A100": 1}], False),
        ("a10g:2", [{"A10G": 2}], False),
        ("{A100: 8}", [{"A100": 8}], False),
        ("{L4:8, A10g:8}", [{"L4": 8}, {"A10G": 8}], False),
        ("{L4, A100}", [{"L4": 1}, {"A100": 1}], False),
        ("{L4:8, A100: 4}", [{"L4": 8}, {"A100": 4}], False),
        ("[A100:8, L4:8]", [{"A100": 8}, {"L4": 8}], True),
        ("[{H100: 1}, A100]", [{"H100": 1}, {"A100": 1}], True),
        ("T4:0.5", [{"T4": 0.5}], False),
        ("MyCustomChip:2", [{"MyCustomChip": 2}], False),
        ("{A100:8, A100: 8}", [{"A100": 8}], False),
    ],
)
def test_accelerator_forms(flow: str, expected: list[dict[str, Any]], ordered: bool) -> None:
    text = f"service: {{readiness_probe: /}}\nresources:\n  ports: 80\n  accelerators: {flow}\nrun: x\n"
    res = load_spec(text).resources
    assert [c.accelerators for c in res.candidates()] == expected
    assert res.ordered is ordered
    assert res.accelerators == (expected[0] if len(expected) == 1 else None)


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        (8080, [8080]),
        ("8080", [8080]),
        ("8080-8082", [8080, 8081, 8082]),
        ([8080, "9000-9001", 8080], [8080, 9000, 9001]),
    ],
)
def test_port_forms(ports: object, expected: list[int]) -> None:
    spec = load_spec(variant(resources__ports=ports, service__ports=8080))
    assert spec.resources.ports == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(4, "4"), (4.0, "4"), (0.5, "0.5"), ("4+", "4+"), ("8", "8"), ("32.0+", "32+")]
)
def test_cpus_and_memory_normalized(value: object, expected: str) -> None:
    spec = load_spec(variant(resources__cpus=value, resources__memory=value))
    assert (spec.resources.cpus, spec.resources.memory) == (expected, expected)


def test_common_resource_fields() -> None:
    spec = load_spec(
        variant(
            resources={
                "ports": 8080,
                "cloud": "GCP",
                "region": "us-central1",
                "zone": "us-central1-a",
                "instance_type": "g2-standard-96",
                "accelerators": "L4:8",
                "accelerator_args": {"tpu_vm": True},
                "use_spot": True,
                "disk_size": 1024,
                "disk_tier": "Best",
                "network_tier": "BEST",
                "image_id": {"us-central1": "projects/x/images/y"},
                "labels": {"team": "ml"},
            }
        )
    )
    res = spec.resources
    assert (res.cloud, res.region, res.zone) == ("gcp", "us-central1", "us-central1-a")
    assert res.instance_type == "g2-standard-96" and res.accelerators == {"L4": 8}
    assert res.accelerator_args == {"tpu_vm": True} and res.use_spot
    assert res.job_recovery is None
    assert (res.disk_size, res.disk_tier, res.network_tier) == (1024, "best", "best")
    assert res.image_id == {"us-central1": "projects/x/images/y"} and res.labels == {"team": "ml"}


def test_infra_shorthand() -> None:
    res = load_spec(variant(resources__infra="aws/us-east-1")).resources
    assert (res.cloud, res.region, res.zone) == ("aws", "us-east-1", None)


def test_any_of_candidates_merge_base_fields() -> None:
    text = variant(
        resources={
            "ports": 8080,
            "accelerators": "A100-80GB:2",
            "cloud": "gcp",
            "any_of": [{"region": "us-central1"}, {"region": "us-east1", "disk_size": 100}],
        }
    )
    res = load_spec(text).resources
    assert not res.ordered
    assert [(c.cloud, c.region, c.accelerators, c.ports, c.use_spot) for c in res.candidates()] == [
        ("gcp", "us-central1", {"A100-80GB": 2}, [8080], False),
        ("gcp", "us-east1", {"A100-80GB": 2}, [8080], False),
    ]


def test_ordered_candidates_keep_preference() -> None:
    text = variant(
        resources={"ports": 8080, "ordered": [{"accelerators": "H100"}, {"accelerators": "A100:2"}]}
    )
    res = load_spec(text).resources
    assert res.ordered
    assert [c.accelerators for c in res.candidates()] == [{"H100": 1}, {"A100": 2}]


def test_task_fields() -> None:
    spec = load_spec(
        variant(
            name="my-svc",
            setup="pip install x\n",
            workdir=".",
            envs={"A": "x", "N": 7, "F": 1.5, "B": True},
            secrets={"TOKEN": "s3cr3t"},
            file_mounts={"/data": "~/data", "/bucket": {"source": "s3://b", "mode": "MOUNT"}},
            num_nodes=1,
        )
    )
    assert spec.name == "my-svc" and spec.setup == "pip install x\n" and spec.workdir == "."
    assert spec.envs == {"A": "x", "N": "7", "F": "1.5", "B": "True"}  # SkyPilot's str()
    assert spec.secrets == {"TOKEN": "s3cr3t"}
    assert spec.file_mounts == {"/data": "~/data", "/bucket": {"source": "s3://b", "mode": "MOUNT"}}
    assert spec.num_nodes == 1


def test_num_nodes_is_accepted_carried_and_launchable_on_every_provider() -> None:
    """SkyServe 0.14.1 accepts num_nodes > 1 (a replica on several nodes): so does the parser, the
    recorded spec keeps it, and every provider launches it (local, aws, gcp, azure)."""
    spec = load_spec(variant(num_nodes=3))
    assert spec.num_nodes == 3 and spec_to_dict(spec)["num_nodes"] == 3
    assert "3 nodes per replica" in describe_resources(spec)
    assert check_launchable(spec) is spec  # enabled clouds unknown: any of them
    for cloud in ("local", "aws", "gcp", "azure"):
        pinned = load_spec(variant(num_nodes=2, resources__cloud=cloud))
        assert check_launchable(pinned, enabled_clouds=[cloud]) is pinned
    one = load_spec(variant(num_nodes=1))
    assert check_launchable(one) is one and load_spec(variant()).num_nodes == 1


def test_a_provider_without_multi_node_has_num_nodes_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal stays for a provider added without multi-node support: ``up`` names the field
    and the clouds the spec may land on, instead of launching the head alone."""
    monkeypatch.setattr(launch, "MULTI_NODE_CLOUDS", ("local",))
    spec = load_spec(variant(num_nodes=3))
    with pytest.raises(SpecValidationError) as info:
        check_launchable(spec)
    assert [i.path for i in info.value.issues] == ["num_nodes"]
    assert "is 3" in str(info.value) and "provider of aws, gcp, azure" in str(info.value)
    assert check_launchable(spec, enabled_clouds=[]) is spec  # none enabled: placed locally
    with pytest.raises(SpecValidationError, match="provider of aws "):
        check_launchable(spec, enabled_clouds=["aws"])
    pinned = load_spec(variant(num_nodes=2, resources__cloud="local"))
    assert check_launchable(pinned, enabled_clouds=["gcp"]) is pinned


def test_blank_setup_is_none() -> None:
    assert load_spec(variant(setup="  \n")).setup is None


def test_all_problems_reported_together_with_lines() -> None:
    text = """\
service:
  readiness_probe: health
  replica_polcy:
    min_replicas: 1
resources:
  ports: 70000
  cloud: gpc
envs:
  HF_TOKEN:
num_nodes: 0
run: ""
"""
    with pytest.raises(SpecValidationError) as info:
        load_spec(text, source="bad.yaml")
    paths = {i.path for i in info.value.issues}
    assert {
        "service.readiness_probe",
        "service.replica_polcy",
        "resources.ports",
        "resources.cloud",
        "envs.HF_TOKEN",
        "num_nodes",
        "run",
    } <= paths
    message = str(info.value)
    assert message.startswith("bad.yaml: ")
    assert (
        "service.replica_polcy (line 3): unknown field 'replica_polcy'; did you mean replica_policy?"
        in message
    )
    assert "resources.cloud (line 7)" in message
    assert info.value.line_of("service.replica_polcy.min_replicas") == 4


@pytest.mark.parametrize(
    ("typo", "path", "suggestion"),
    [
        ("service:\n  readiness_prob: /\n", "service.readiness_prob", "readiness_probe"),
        ("service:\n  readiness_probe: /\n  replica: 2\n", "service.replica", "replicas"),
        ("service:\n  readiness_probe: /\n  load_balancing_polcy: x\n", "service.load_balancing_polcy",
         "load_balancing_policy"),
        ("service:\n  readiness_probe: {path: /, intial_delay_seconds: 5}\n",
         "service.readiness_probe.intial_delay_seconds", "initial_delay_seconds"),
        ("service: {readiness_probe: /}\nenv:\n  A: b\n", "env", "envs"),
        ("service: {readiness_probe: /}\nsetpu: x\n", "setpu", "setup"),
    ],
)  # fmt: skip
def test_typo_suggestions(typo: str, path: str, suggestion: str) -> None:
    text = typo + "resources: {ports: 8080}\nrun: x\n"
    with pytest.raises(SpecValidationError) as info:
        load_spec(text)
    (issue,) = [i for i in info.value.issues if i.path == path]
    assert issue.message.endswith(f"did you mean {suggestion}?")


def test_unknown_field_without_close_match_lists_fields() -> None:
    with pytest.raises(SpecValidationError) as info:
        load_spec(variant(service__zzz=1))
    assert "expected one of readiness_probe, replicas" in str(info.value)


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("service:\n  replicas: 2\n readiness_probe: /\n", 3, 2),
        ("service: {readiness_probe: /\n", 2, 1),
        ("run: 'unterminated\n", 2, 1),
        ("service:\n\treplicas: 2\n", 2, 1),
    ],
)
def test_malformed_yaml_has_line_and_column(text: str, line: int, column: int) -> None:
    with pytest.raises(SpecSyntaxError) as info:
        load_spec(text, source="s.yaml")
    assert (info.value.line, info.value.column) == (line, column)
    assert f"line {line}, column {column}" in str(info.value)
    assert str(info.value).startswith("s.yaml: invalid YAML")


def test_duplicate_keys_are_rejected() -> None:
    with pytest.raises(SpecSyntaxError) as info:
        load_spec("service:\n  replicas: 2\n  replicas: 3\n")
    assert "duplicate key 'replicas'" in str(info.value)
    assert info.value.line == 3


def test_merge_keys_still_work() -> None:
    text = "base: &b {readiness_probe: /}\n"
    with pytest.raises(SpecValidationError) as info:  # `base` is unknown, but << merged fine
        load_spec(text + "service:\n  <<: *b\n  replicas: 2\nresources: {ports: 80}\nrun: x\n")
    assert [i.path for i in info.value.issues] == ["base"]


@pytest.mark.parametrize(
    ("text", "keyword"),
    [("", "empty"), ("# only a comment\n", "empty"), ("- a\n- b\n", "got list"), ("just text", "got string")],
)
def test_empty_or_not_a_mapping(text: str, keyword: str) -> None:
    with pytest.raises(SpecValidationError) as info:
        load_spec(text)
    assert keyword in str(info.value)


def test_missing_file_and_directory(tmp_path: Any) -> None:
    with pytest.raises(SpecFileError, match="no such file"):
        load_spec_file(tmp_path / "nope.yaml")
    with pytest.raises(SpecFileError, match="directory"):
        load_spec_file(tmp_path)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SpecFileError, match="UTF-8"):
        load_spec_file(binary)


def test_error_hierarchy() -> None:
    for cls in (SpecFileError, SpecSyntaxError, SpecValidationError):
        assert issubclass(cls, SpecError) and issubclass(cls, ValueError)


def test_billion_laughs_stays_cheap() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    with pytest.raises(SpecSyntaxError, match="aliases expanded"):  # more in test_spec_yaml_bounds
        load_spec("\n".join(lines) + "\n")
