"""Invalid specs are rejected with an error naming the field path and the rule broken."""

from __future__ import annotations

import pytest
from spec_helpers import DELETE, variant

from libs.spec import SpecValidationError, load_spec

POLICY = {"min_replicas": 1, "max_replicas": 4, "target_qps_per_replica": 2}


def policy(**changes: object) -> dict[str, object]:
    out = {**POLICY, **changes}
    return {k: v for k, v in out.items() if v is not DELETE}


def autoscaling(**changes: object) -> str:
    return variant(service__replicas=DELETE, service__replica_policy=policy(**changes))


SPOT_SET = "resources:\n  ports: 8080\n  accelerators: {L4:8, A100:4}\n"

CASES = [
    # (id, yaml text, path named in the error, rule keyword)
    ("top-typo", variant(resoures={"cpus": 2}), "resoures", "did you mean resources"),
    (
        "service-typo",
        variant(service__replica_polcy=POLICY),
        "service.replica_polcy",
        "did you mean replica_policy",
    ),
    (
        "policy-typo",
        autoscaling(max_replica=3),
        "service.replica_policy.max_replica",
        "did you mean max_replicas",
    ),
    ("no-service", variant(service=DELETE), "service", "required"),
    ("service-not-mapping", variant(service="yes"), "service", "mapping"),
    ("probe-no-slash", variant(service__readiness_probe="health"), "service.readiness_probe", "'/'"),
    ("probe-spaces", variant(service__readiness_probe="/he alth"), "service.readiness_probe", "spaces"),
    ("probe-number", variant(service__readiness_probe=200), "service.readiness_probe", "mapping"),
    (
        "probe-no-path",
        variant(service__readiness_probe={"initial_delay_seconds": 10}),
        "service.readiness_probe.path",
        "required",
    ),
    (
        "probe-unknown",
        variant(service__readiness_probe={"path": "/", "method": "POST"}),
        "service.readiness_probe.method",
        "unknown field",
    ),
    (
        "post-data-bad-json",
        variant(service__readiness_probe={"path": "/", "post_data": "{model: x"}),
        "service.readiness_probe.post_data",
        "JSON",
    ),
    (
        "post-data-list",
        variant(service__readiness_probe={"path": "/", "post_data": [1, 2]}),
        "service.readiness_probe.post_data",
        "mapping",
    ),
    (
        "post-data-json-list",
        variant(service__readiness_probe={"path": "/", "post_data": "[1, 2]"}),
        "service.readiness_probe.post_data",
        "mapping",
    ),
    (
        "initial-delay-negative",
        variant(service__readiness_probe={"path": "/", "initial_delay_seconds": -1}),
        "service.readiness_probe.initial_delay_seconds",
        "at least 0",
    ),
    (
        "initial-delay-string",
        variant(service__readiness_probe={"path": "/", "initial_delay_seconds": "20m"}),
        "service.readiness_probe.initial_delay_seconds",
        "number of seconds",
    ),
    (
        "timeout-zero",
        variant(service__readiness_probe={"path": "/", "timeout_seconds": 0}),
        "service.readiness_probe.timeout_seconds",
        "greater than 0",
    ),
    (
        "header-value-number",
        variant(service__readiness_probe={"path": "/", "headers": {"X-Key": 5}}),
        "service.readiness_probe.headers.X-Key",
        "string",
    ),
    (
        "header-bad-name",
        variant(service__readiness_probe={"path": "/", "headers": {"Bad Name": "x"}}),
        "service.readiness_probe.headers",
        "header name",
    ),
    ("replicas-and-policy", variant(service__replica_policy=POLICY), "service.replicas", "together"),
    ("replicas-negative", variant(service__replicas=-1), "service.replicas", "at least 0"),
    ("workers-and-replicas", variant(service__workers=2), "service.workers", "use only replicas"),
    ("pool", variant(service__pool={"workers": 2}), "service.pool", "not a service"),
    ("replicas-string", variant(service__replicas="two"), "service.replicas", "integer"),
    ("replicas-bool", variant(service__replicas=True), "service.replicas", "integer"),
    ("replicas-float", variant(service__replicas=2.5), "service.replicas", "integer"),
    (
        "policy-not-mapping",
        variant(service__replicas=DELETE, service__replica_policy=3),
        "service.replica_policy",
        "mapping",
    ),
    ("min-missing", autoscaling(min_replicas=DELETE), "service.replica_policy.min_replicas", "required"),
    ("min-negative", autoscaling(min_replicas=-1), "service.replica_policy.min_replicas", "at least 0"),
    (
        "max-below-min",
        autoscaling(min_replicas=5, max_replicas=2),
        "service.replica_policy.max_replicas",
        "at least min_replicas",
    ),
    (
        "qps-without-max",
        autoscaling(max_replicas=DELETE),
        "service.replica_policy.target_qps_per_replica",
        "requires max_replicas",
    ),
    (
        "max-without-qps",
        autoscaling(target_qps_per_replica=DELETE),
        "service.replica_policy.max_replicas",
        "requires target_qps_per_replica",
    ),
    (
        "qps-zero",
        autoscaling(target_qps_per_replica=0),
        "service.replica_policy.target_qps_per_replica",
        "greater than 0",
    ),
    (
        "qps-negative",
        autoscaling(target_qps_per_replica=-1.5),
        "service.replica_policy.target_qps_per_replica",
        "greater than 0",
    ),
    (
        "qps-string",
        autoscaling(target_qps_per_replica="fast"),
        "service.replica_policy.target_qps_per_replica",
        "number",
    ),
    (
        "upscale-negative",
        autoscaling(upscale_delay_seconds=-5),
        "service.replica_policy.upscale_delay_seconds",
        "at least 0",
    ),
    (
        "downscale-negative",
        autoscaling(downscale_delay_seconds=-1.5),
        "service.replica_policy.downscale_delay_seconds",
        "at least 0",
    ),
    (
        "overprovision-negative",
        autoscaling(num_overprovision=-1),
        "service.replica_policy.num_overprovision",
        "at least 0",
    ),
    (
        "fallback-without-spot",
        autoscaling(base_ondemand_fallback_replicas=1),
        "service.replica_policy.base_ondemand_fallback_replicas",
        "use_spot",
    ),
    (
        "dynamic-fallback-without-spot",
        autoscaling(dynamic_ondemand_fallback=True),
        "service.replica_policy.dynamic_ondemand_fallback",
        "use_spot",
    ),
    (
        "dynamic-fallback-string",
        autoscaling(dynamic_ondemand_fallback="yes"),
        "service.replica_policy.dynamic_ondemand_fallback",
        "true or false",
    ),
    (
        "spot-placer-without-spot",
        autoscaling(spot_placer="dynamic_fallback"),
        "service.replica_policy.spot_placer",
        "use_spot",
    ),
    (
        "spot-placer-unknown",
        autoscaling(spot_placer="cheapest"),
        "service.replica_policy.spot_placer",
        "dynamic_fallback",
    ),
    (
        "fallback-above-max",
        variant(
            service__replicas=DELETE,
            resources__use_spot=True,
            service__replica_policy=policy(base_ondemand_fallback_replicas=9),
        ),
        "service.replica_policy.base_ondemand_fallback_replicas",
        "at most max_replicas",
    ),
    (
        "lb-policy",
        variant(service__load_balancing_policy="random"),
        "service.load_balancing_policy",
        "round_robin",
    ),
    (
        "instance-aware-without-mapping",
        variant(service__load_balancing_policy="instance_aware_least_load"),
        "service.load_balancing_policy",
        "mapping of accelerator",
    ),
    (
        "qps-mapping-without-instance-aware",
        autoscaling(target_qps_per_replica={"A100": 5}),
        "service.replica_policy.target_qps_per_replica",
        "instance_aware_least_load",
    ),
    (
        "qps-mapping-lowercase",
        autoscaling(target_qps_per_replica={"a100": 5}),
        "service.replica_policy.target_qps_per_replica",
        "capitals",
    ),
    (
        "probe-interval-zero",
        variant(service__readiness_probe={"path": "/", "endpoint_probe_interval_seconds": 0}),
        "service.readiness_probe.endpoint_probe_interval_seconds",
        "greater than 0",
    ),
    (
        "stream-timeout-zero",
        variant(service__load_balancer={"stream_timeout_seconds": 0}),
        "service.load_balancer.stream_timeout_seconds",
        "greater than 0",
    ),
    (
        "mixed-spot",
        variant(resources__any_of=[{"use_spot": True}, {"use_spot": False}]),
        "resources.use_spot",
        "all use spot or none",
    ),
    ("service-port-not-exposed", variant(service__ports=9000), "service.ports", "not one of"),
    ("service-port-range", variant(service__ports=70000), "service.ports", "out of range"),
    ("service-port-is-range", variant(service__ports="8080-8081"), "service.ports", "single port"),
    ("tls-missing-cert", variant(service__tls={"keyfile": "k.pem"}), "service.tls.certfile", "required"),
    ("tls-not-mapping", variant(service__tls="on"), "service.tls", "mapping"),
    ("no-resources", variant(resources=DELETE), "resources.ports", "required"),
    ("no-ports", variant(resources={"accelerators": "A100"}), "resources.ports", "required"),
    ("resources-list", variant(resources=["A100"]), "resources", "mapping"),
    ("port-zero", variant(resources__ports=0), "resources.ports", "out of range"),
    ("port-too-big", variant(resources__ports=[8080, 65536]), "resources.ports[1]", "out of range"),
    ("port-range-reversed", variant(resources__ports="8090-8080"), "resources.ports", "ends before"),
    ("port-word", variant(resources__ports="http"), "resources.ports", "port number"),
    ("port-empty-list", variant(resources__ports=[]), "resources.ports", "at least one"),
    ("ports-ambiguous", variant(resources__ports=[8080, 8081]), "resources.ports", "single port"),
    ("acc-zero", variant(resources__accelerators="A100:0"), "resources.accelerators", "greater than 0"),
    (
        "acc-negative-dict",
        variant(resources__accelerators={"A100": -1}),
        "resources.accelerators",
        "greater than 0",
    ),
    (
        "acc-count-word",
        variant(resources__accelerators="A100:eight"),
        "resources.accelerators",
        "invalid count",
    ),
    ("acc-number", variant(resources__accelerators=8), "resources.accelerators", "string"),
    ("acc-empty-list", variant(resources__accelerators=[]), "resources.accelerators", "at least one"),
    (
        "acc-count-twice",
        "service: {readiness_probe: /}\nresources: {ports: 80, accelerators: {'A100:8': 8}}\nrun: x\n",
        "resources.accelerators",
        "twice",
    ),
    (
        "acc-set-and-any-of",
        SPOT_SET + "  any_of:\n    - cloud: aws\nservice: {readiness_probe: /}\nrun: x\n",
        "resources.accelerators",
        "cannot be combined",
    ),
    ("cpus-word", variant(resources__cpus="four"), "resources.cpus", "number"),
    ("cpus-zero", variant(resources__cpus=0), "resources.cpus", "greater than 0"),
    ("cpus-negative", variant(resources__cpus=-2), "resources.cpus", "greater than 0"),
    ("memory-plus-plus", variant(resources__memory="32++"), "resources.memory", "4+"),
    ("use-spot-string", variant(resources__use_spot="yes"), "resources.use_spot", "true or false"),
    ("disk-tier", variant(resources__disk_tier="fast"), "resources.disk_tier", "one of"),
    ("network-tier", variant(resources__network_tier="fast"), "resources.network_tier", "standard, best"),
    ("disk-size-negative", variant(resources__disk_size=-10), "resources.disk_size", "at least 1"),
    ("cloud-typo", variant(resources__cloud="gpc"), "resources.cloud", "did you mean gcp"),
    (
        "resources-typo",
        variant(resources__acelerators="A100"),
        "resources.acelerators",
        "did you mean accelerators",
    ),
    ("any-of-not-list", variant(resources__any_of={"cloud": "aws"}), "resources.any_of", "non-empty list"),
    (
        "any-of-typo",
        variant(resources__any_of=[{"regoin": "us-east-1"}]),
        "resources.any_of[0].regoin",
        "did you mean region",
    ),
    (
        "any-of-nested",
        variant(resources__any_of=[{"any_of": []}]),
        "resources.any_of[0].any_of",
        "unknown field",
    ),
    (
        "any-of-and-ordered",
        variant(resources__any_of=[{"cloud": "aws"}], resources__ordered=[{"cloud": "gcp"}]),
        "resources.ordered",
        "together",
    ),
    (
        "candidate-lacks-port",
        variant(service__ports=8080, resources__any_of=[{"ports": 9000}]),
        "service.ports",
        "not one of",
    ),
    (
        "infra-and-cloud",
        variant(resources__infra="aws/us-east-1", resources__cloud="aws"),
        "resources.infra",
        "cannot be combined",
    ),
    (
        "job-recovery",
        variant(resources__job_recovery="FAILOVER"),
        "resources.job_recovery",
        "not supported for services",
    ),
    (
        "spot-recovery",
        variant(resources__spot_recovery="FAILOVER"),
        "resources.spot_recovery",
        "not supported for services",
    ),
    ("env-null", variant(envs={"HF_TOKEN": None}), "envs.HF_TOKEN", "--env"),
    ("env-list-value", variant(envs={"ARGS": [1, 2]}), "envs.ARGS", "string"),
    ("env-bad-name", variant(envs={"1BAD": "x"}), "envs", "not a valid"),
    ("envs-not-mapping", variant(envs=["A=1"]), "envs", "mapping"),
    ("secret-null", variant(secrets={"API_KEY": None}), "secrets.API_KEY", "--secret API_KEY=VALUE"),
    (
        "secret-also-env",
        variant(envs={"TOKEN": "a"}, secrets={"TOKEN": "b"}),
        "secrets.TOKEN",
        "also declared",
    ),
    ("run-missing", variant(run=DELETE), "run", "required"),
    ("run-empty", variant(run="   "), "run", "empty"),
    ("run-list", variant(run=["python", "app.py"]), "run", "string"),
    ("setup-list", variant(setup=["pip install x"]), "setup", "string"),
    ("workdir-number", variant(workdir=5), "workdir", "string"),
    ("num-nodes-zero", variant(num_nodes=0), "num_nodes", "at least 1"),
    ("name-invalid", variant(name="my service!"), "name", "letter"),
    ("file-mount-number", variant(file_mounts={"/data": 5}), "file_mounts./data", "mapping"),
    (
        "file-mount-mode",
        variant(file_mounts={"/data": {"source": "s3://b", "mode": "SYNC"}}),
        "file_mounts./data.mode",
        "one of",
    ),
]


def test_the_table_is_large_and_ids_unique() -> None:
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("text", "path", "keyword"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rejected_naming_path_and_rule(text: str, path: str, keyword: str) -> None:
    with pytest.raises(SpecValidationError) as info:
        load_spec(text, source="case.yaml")
    matching = [i for i in info.value.issues if i.path == path]
    assert matching, f"no issue at {path!r}: {info.value}"
    assert any(keyword in i.message for i in matching), str(info.value)
    assert path in str(info.value)
