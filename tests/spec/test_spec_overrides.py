"""``apply_overrides``: sky serve up/update flags applied to the YAML, then parsed as usual."""

from __future__ import annotations

import pytest

from libs.spec import EnvOverrideError, apply_overrides, load_spec, parse_env_file

YAML = """\
service:
  readiness_probe: /
resources:
  ports: 8080
  infra: gcp/us-central1
  accelerators: {A100: 1, L4: 1}
  any_of:
    - {use_spot: true, zone: us-central1-a}
    - {use_spot: true}
run: serve
"""


def test_resource_overrides_apply_to_every_candidate() -> None:
    base = YAML.replace("  accelerators: {A100: 1, L4: 1}\n", "")
    text = apply_overrides(
        base, resources={"region": "us-east1", "accelerators": "H100:8", "use_spot": False}
    )
    res = load_spec(text).resources
    got = [(c.cloud, c.region, c.zone, c.accelerators, c.use_spot) for c in res.candidates()]
    assert got == [
        ("gcp", "us-east1", "us-central1-a", {"H100": 8}, False),
        ("gcp", "us-east1", None, {"H100": 8}, False),
    ]


def test_no_override_keeps_the_text_and_secrets_are_declared_without_values() -> None:
    assert apply_overrides(YAML) == YAML
    text = apply_overrides(YAML.replace("  accelerators: {A100: 1, L4: 1}\n", ""), secrets=["HF_TOKEN"])
    assert "HF_TOKEN: null" in text
    spec = load_spec(text, env_overrides={"HF_TOKEN": "hf_x"})
    assert spec.secrets == {"HF_TOKEN": "hf_x"} and "HF_TOKEN" not in spec.envs
    with pytest.raises(ValueError, match="not a resource override: image_id"):
        apply_overrides(YAML, resources={"image_id": "x"})


def test_env_file() -> None:
    text = "# c\n\nexport A=1\nB = 'two words'\nC=\"q\"\nD=x # note\n"
    assert parse_env_file(text) == {"A": "1", "B": "two words", "C": "q", "D": "x"}
    with pytest.raises(EnvOverrideError, match="line 2"):
        parse_env_file("A=1\n1BAD=x\n")


def test_describe_service_with_per_accelerator_qps() -> None:
    from libs.spec import describe_service

    spec = load_spec(
        "service:\n  load_balancing_policy: instance_aware_least_load\n"
        "  replica_policy: {min_replicas: 1, max_replicas: 4, target_qps_per_replica: {A100: 10, L4: 2.5}}\n"
        "resources: {ports: 8080}\nrun: serve\n"
    )
    assert describe_service(spec, "llm") == (
        "service llm: 1-4 replicas at qps per accelerator A100 10, L4 2.5, port 8080, probe GET /"
    )
