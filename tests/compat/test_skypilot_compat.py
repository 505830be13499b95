"""Stratus's spec parser against SkyPilot 0.14.1's own, on a corpus of service YAMLs.

The corpus is ``corpus/*.yaml`` (named ``accept-``, ``refuse-``, ``stricter-`` or
``unsupported-``), every YAML of SkyPilot's own ``examples/serve`` and the ``llm/`` recipes with a
``service:`` section (``corpus/skypilot/``, verbatim; origin in ``corpus/README.md``), plus every
YAML in this repository's ``examples/``. ``skypilot_0_14_1.json`` records what SkyPilot 0.14.1 did
with each (the checks ``sky serve up`` runs before launching: ``sky.Task.from_yaml_config`` and
``validate_service_task``, see ``skypilot_probe.py``), so the Stratus side always runs:

- SkyPilot accepts -> Stratus accepts, with the same values (SkyServe's defaults included);
- SkyPilot refuses -> Stratus refuses, naming the field (``REFUSED_AT``);
- ``stricter-``: SkyPilot accepts nonsense (a negative count, a zero timeout) -> Stratus
  refuses, naming the field;
- ``unsupported-``: SkyPilot accepts a field Stratus does not implement (``config``,
  ``resources.max_hourly_cost``, ...) -> Stratus refuses, naming it and saying so;
- ``MULTI_NODE``: SkyPilot accepts a feature only some Stratus providers have (a replica on
  ``num_nodes > 1`` nodes: local only) -> the parser accepts it with SkyServe's values, and ``up``
  refuses it where it may be placed on another cloud, naming the cloud and the field
  (``libs.spec.check_launchable``; docs/skyserve.md lists them);
- ``NEEDS_VALUES``: a ``secrets:`` entry left null, which SkyPilot resolves at launch from
  ``--secret`` or its managed secrets store. Stratus has no such store: refused, naming the
  field and the flag, and accepted with SkyServe's values given ``--secret`` as the YAML says.

``test_recorded_verdicts_are_skypilots`` re-runs SkyPilot itself on the corpus when it is
installed in a side venv: ``STRATUS_SKYPILOT_PYTHON`` names its interpreter, else a venv at
``.skypilot-venv/`` in the repository or ``skyvenv/`` in the temp directory is used
(``python -m venv <dir> && <dir>/bin/pip install skypilot==0.14.1``). Without one that test
alone is skipped. To re-record: ``<python> tests/compat/skypilot_probe.py
tests/compat/skypilot_0_14_1.json tests/compat/corpus/*.yaml tests/compat/corpus/skypilot/*.yaml
examples/*.yaml``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from libs.spec import SpecValidationError, check_launchable, load_spec_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SKYPILOT_OWN = sorted(HERE.glob("corpus/skypilot/*.yaml"))
CORPUS = sorted(HERE.glob("corpus/*.yaml")) + SKYPILOT_OWN + sorted((REPO / "examples").glob("*.yaml"))
RECORDED: dict[str, dict[str, Any]] = json.loads((HERE / "skypilot_0_14_1.json").read_text())
SKYPILOT_VERSION = "0.14.1"

# The field Stratus names when it refuses (SkyPilot refuses too, or accepts nonsense).
REFUSED_AT = {
    "refuse-delay-string": "service.readiness_probe.initial_delay_seconds",
    "refuse-fallback-without-spot": "service.replica_policy.dynamic_ondemand_fallback",
    "refuse-env-without-value": "envs.HF_TOKEN",
    "refuse-headers-not-strings": "service.readiness_probe.headers.X-Retries",
    "refuse-instance-aware-scalar-qps": "service.load_balancing_policy",
    "refuse-job-recovery": "resources.job_recovery",
    "refuse-job-recovery-mapping": "resources.job_recovery",
    "refuse-lb-policy-uppercase": "service.load_balancing_policy",
    "refuse-many-ports": "resources.ports",
    "refuse-max-below-min": "service.replica_policy.max_replicas",
    "refuse-min-negative": "service.replica_policy.min_replicas",
    "refuse-mixed-spot": "resources.use_spot",
    "refuse-no-service": "service",
    "refuse-policy-without-min": "service.replica_policy.min_replicas",
    "refuse-pool": "pool",
    "refuse-post-data-bad-json": "service.readiness_probe.post_data",
    "refuse-probe-mapping-no-path": "service.readiness_probe.path",
    "refuse-probe-no-slash": "service.readiness_probe",
    "refuse-qps-mapping-dash-key": "service.replica_policy.target_qps_per_replica",
    "refuse-qps-mapping-least-load": "service.replica_policy.target_qps_per_replica",
    "refuse-qps-without-max": "service.replica_policy.target_qps_per_replica",
    "refuse-range-without-qps": "service.replica_policy.max_replicas",
    "refuse-replicas-and-policy": "service.replicas",
    "refuse-replicas-string": "service.replicas",
    "refuse-service-port-range": "service.ports",
    "refuse-spot-placer-uppercase": "service.replica_policy.spot_placer",
    "refuse-tls-incomplete": "service.tls.certfile",
    "refuse-unknown-lb-field": "service.load_balancer.timeout_seconds",
    "refuse-unknown-lb-policy": "service.load_balancing_policy",
    "refuse-unknown-probe-field": "service.readiness_probe.interval_seconds",
    "refuse-unknown-service-field": "service.replica",
    "stricter-failure-threshold-negative": "service.readiness_probe.consecutive_failure_threshold_timeout",
    "stricter-initial-delay-negative": "service.readiness_probe.initial_delay_seconds",
    "stricter-no-run": "run",
    "stricter-probe-interval-zero": "service.readiness_probe.endpoint_probe_interval_seconds",
    "stricter-qps-zero": "service.replica_policy.target_qps_per_replica",
    "stricter-replicas-negative": "service.replicas",
    "stricter-stream-timeout-zero": "service.load_balancer.stream_timeout_seconds",
    "stricter-timeout-zero": "service.readiness_probe.timeout_seconds",
    "stricter-upscale-negative": "service.replica_policy.upscale_delay_seconds",
    # SkyPilot 0.14.1 fields Stratus does not implement (libs/spec/unsupported.py): refused, saying so.
    "unsupported-api-server-access": "api_server_access",
    "unsupported-config": "config",
    "unsupported-event-callback": "event_callback",
    "unsupported-file-mounts-mapping": "file_mounts_mapping",
    "unsupported-managed-secrets": "managed_secrets",
    "unsupported-metadata": "_metadata",
    "unsupported-volumes": "volumes",
    "unsupported-resources-autostop": "resources.autostop",
    "unsupported-resources-ephemeral-storage": "resources.ephemeral_storage",
    "unsupported-resources-local-disk": "resources.local_disk",
    "unsupported-resources-max-hourly-cost": "resources.max_hourly_cost",
    "unsupported-resources-priority": "resources.priority",
    "unsupported-resources-priority-class": "resources.priority_class",
    # SkyPilot's own examples (corpus/skypilot/) that SkyPilot 0.14.1 refuses: fields of other
    # SkyPilot versions (route53, https, the v2 ``model:``, the early spot policies), an env left
    # null, no service section, or target_qps_per_replica without max_replicas.
    "examples-serve-auth-server": "service.auth_key",
    "examples-serve-external-lb": "service.route53_hosted_zone",
    "examples-serve-external-lb-client": "envs.HF_TOKEN",
    "examples-serve-external-lb-global-sky-lb": "envs.IP",
    "examples-serve-external-lb-llm": "envs.HF_TOKEN",
    "examples-serve-external-lb-router": "envs.WORKER_URLS",
    "examples-serve-external-lb-service": "service.route53_hosted_zone",
    "examples-serve-https-service": "service.https",
    "examples-serve-llama-3-8b": "model",
    "examples-serve-llama2-llama2": "envs.HF_TOKEN",
    "examples-serve-nvidia-dynamo-nvidia-dynamo-multinode.sky": "service",
    "examples-serve-nvidia-dynamo-nvidia-dynamo.sky": "service",
    "examples-serve-on-demand-policy": "service.replica_policy.on_demand_zones",
    "examples-serve-policy-base_on_demand_fallback_replicas": (
        "service.replica_policy.base_on_demand_fallback_replicas"
    ),
    "examples-serve-policy-dynamic_on_demand_fallback": "service.replica_policy.dynamic_on_demand_fallback",
    "examples-serve-policy-multi_accelerators": "service.replica_policy.target_qps_per_replica",
    "examples-serve-policy-on_demand": "service.replica_policy.autoscaler",
    "examples-serve-policy-on_demand_plus": "service.replica_policy.init_replicas",
    "examples-serve-policy-spot_hedge": "service.replica_policy.spot_policy",
    "examples-serve-policy-spot_hedge_minus": "service.replica_policy.spot_zones",
    "examples-serve-policy-spot_hedge_no_spot_zones": "service.replica_policy.min_on_demand_replicas",
    "examples-serve-policy-spot_on_demand_mix": "service.replica_policy.extra_on_demand_replicas",
    "examples-serve-policy-spot_only": "service.replica_policy.autoscaler",
    "examples-serve-qwen-7b": "model",
    "examples-serve-ray_serve-ray_serve": "service.port",
    "examples-serve-spot-dynamic-failover-on-demand-fallback": "service.replica_policy.spot_mixer",
    "examples-serve-spot-spot-aws-no-zone": "service.replica_policy.num_extra",
    "examples-serve-spot-spot-aws-test": "service.replica_policy.num_extra",
    "examples-serve-spot-spot-task-auto_restart-false": "service.replica_policy.auto_restart",
    "examples-serve-spot-spot-task-has-zone": "service.replica_policy.num_init_replicas",
    "examples-serve-spot-spot-task-use-spot-false": "service.replica_policy.spot_mixer",
    "examples-serve-spot_policy-base_on_demand_fallback_replicas": (
        "service.replica_policy.target_qps_per_replica"
    ),
    "examples-serve-spot_policy-dynamic_on_demand_fallback": "service.replica_policy.target_qps_per_replica",
    "examples-serve-spot_policy-multi_accelerators": "service.replica_policy.target_qps_per_replica",
    "examples-serve-stable_diffusion_service": "resources.load_balancing_policy",
    "llm-deepseek-r1-deepseek-r1-671B": "service.replica_policy.max_replicas",
    "llm-gemma3-gemma3": "envs.HF_TOKEN",
    "llm-llama-3_2-llama3_2": "envs.HF_TOKEN",
    "llm-llama-3_2-llama3_2-vision-11b": "envs.HF_TOKEN",
    "llm-llama-3_2-llama3_2-vision-90b": "envs.HF_TOKEN",
    "llm-qwen-serve-7b": "resources.ports",
    "llm-sglang-llama2": "envs.HF_TOKEN",
}

# num_nodes > 1: valid for SkyPilot and for Stratus, launched by every provider (a replica is a
# cluster of nodes; the "unsupported-" one was refused before the clouds launched several nodes).
MULTI_NODE = {
    "accept-multi-node": "num_nodes",
    "examples-serve-multi_node-multi_node": "num_nodes",
    "examples-serve-multi_node-multi_node_job": "num_nodes",
    "llm-kimi-k2-kimi-k2.sky": "num_nodes",
    "llm-vllm-vllm-multinode.sky": "num_nodes",
}

# Null secrets SkyPilot resolves at launch: the field refused without them, the --secret values
# the YAML's usage line gives.
NEEDS_VALUES = {
    "llm-kimi-k2-kimi-k2.sky": ("secrets.HF_TOKEN", {"HF_TOKEN": "hf_x"}),
    "llm-llama-3_1-llama-3_1": ("secrets.HF_TOKEN", {"HF_TOKEN": "hf_x"}),
    "llm-vllm-service-with-auth": ("secrets.HF_TOKEN", {"HF_TOKEN": "hf_x", "AUTH_TOKEN": "tok"}),
    "llm-vllm-vllm.sky": ("secrets.HF_TOKEN", {"HF_TOKEN": "hf_x"}),
    "llm-vllm-vllm-multinode.sky": ("secrets.HF_TOKEN", {"HF_TOKEN": "hf_x"}),
    "llm-vllm-vllm-with-auth.sky": ("secrets.HF_TOKEN", {"HF_TOKEN": "hf_x", "AUTH_TOKEN": "tok"}),
}


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def skyserve_as_stratus(verdict: dict[str, Any]) -> dict[str, Any]:
    """SkyServe's service spec in Stratus's normalized field names, its defaults applied."""
    s = verdict["service"]
    return {
        "readiness_path": s["readiness_path"],
        "initial_delay_seconds": s["initial_delay_seconds"],
        "readiness_timeout_seconds": s["readiness_timeout_seconds"],
        "endpoint_probe_interval_seconds": s["endpoint_probe_interval_seconds"],
        "consecutive_failure_threshold_timeout": s["consecutive_failure_threshold_timeout"],
        "stream_timeout_seconds": s["lb_stream_timeout_seconds"],
        "post_data": s["post_data"],
        "headers": _or(s["readiness_headers"], {}),
        "min_replicas": s["min_replicas"],
        "max_replicas": _or(s["max_replicas"], s["min_replicas"]),
        "target_qps_per_replica": s["target_qps_per_replica"],
        "upscale_delay_seconds": _or(s["upscale_delay_seconds"], 300),
        "downscale_delay_seconds": _or(s["downscale_delay_seconds"], 1200),
        "num_overprovision": _or(s["num_overprovision"], 0),
        "base_ondemand_fallback_replicas": _or(s["base_ondemand_fallback_replicas"], 0),
        "dynamic_ondemand_fallback": _or(s["dynamic_ondemand_fallback"], False),
        "spot_placer": s["spot_placer"],
        "load_balancing_policy": _or(s["load_balancing_policy"], "least_load"),
        # service.ports, else the one port of resources.ports
        "ports": int(s["ports"] if s["ports"] is not None else verdict["ports"][0]),
    }


def test_corpus_is_recorded_and_named_by_verdict() -> None:
    assert len(CORPUS) >= 130 and len(SKYPILOT_OWN) >= 60
    assert len({p.stem for p in CORPUS}) == len(CORPUS)
    assert sorted(RECORDED) == sorted(p.stem for p in CORPUS)
    for path in CORPUS:
        accepted = RECORDED[path.stem]["accepted"]
        if path.stem.startswith("refuse-"):
            assert not accepted, path.stem
        elif path in SKYPILOT_OWN:  # verbatim: the verdict decides, REFUSED_AT names the field
            assert accepted == (path.stem not in REFUSED_AT), (path.stem, RECORDED[path.stem].get("error"))
        else:
            assert accepted, (path.stem, RECORDED[path.stem].get("error"))
    named = {p.stem for p in CORPUS if p.stem.startswith(("refuse-", "stricter-", "unsupported-"))}
    named -= MULTI_NODE.keys()
    assert set(REFUSED_AT) == named | {p.stem for p in SKYPILOT_OWN if not RECORDED[p.stem]["accepted"]}
    unsupported = {p.stem for p in CORPUS if p.stem.startswith("unsupported-")}
    assert unsupported <= MULTI_NODE.keys() | REFUSED_AT.keys()
    assert all(RECORDED[name]["accepted"] for name in (*MULTI_NODE, *NEEDS_VALUES))


SET_ASIDE = REFUSED_AT.keys() | NEEDS_VALUES.keys()
ACCEPTED = [p for p in CORPUS if RECORDED.get(p.stem, {}).get("accepted") and p.stem not in SET_ASIDE]


@pytest.mark.parametrize("path", ACCEPTED, ids=[p.stem for p in ACCEPTED])
def test_accepted_by_both_with_skyserve_values(path: Path) -> None:
    spec = load_spec_file(path)
    got = {name: getattr(spec.service, name) for name in skyserve_as_stratus(RECORDED[path.stem])}
    assert got == skyserve_as_stratus(RECORDED[path.stem])
    assert spec.num_nodes == RECORDED[path.stem]["num_nodes"]
    assert check_launchable(spec) is spec


MULTI_NODES = [p for p in CORPUS if p.stem in MULTI_NODE]


@pytest.mark.parametrize("path", MULTI_NODES, ids=[p.stem for p in MULTI_NODES])
def test_multi_node_specs_are_valid_and_launchable_wherever_pinned(path: Path) -> None:
    given = NEEDS_VALUES.get(path.stem, ("", {}))[1]
    spec = load_spec_file(path, env_overrides=given)  # valid, as for SkyPilot; num_nodes carried
    assert spec.num_nodes > 1
    assert check_launchable(spec) is spec
    pinned = {c.cloud for c in spec.resources.candidates()} - {None}
    for cloud in pinned:  # launched there, whatever else is enabled
        assert check_launchable(spec, enabled_clouds=[]) is spec
        assert check_launchable(spec, enabled_clouds=[cloud]) is spec


@pytest.mark.parametrize("name", sorted(NEEDS_VALUES))
def test_null_secrets_need_their_values(name: str) -> None:
    path = HERE / "corpus" / "skypilot" / f"{name}.yaml"
    field, values = NEEDS_VALUES[name]
    with pytest.raises(SpecValidationError) as info:
        load_spec_file(path)
    assert field in [issue.path for issue in info.value.issues]
    assert f"--secret {field.split('.')[1]}=VALUE" in str(info.value)
    svc = load_spec_file(path, env_overrides=values).service
    want = skyserve_as_stratus(RECORDED[name])
    got = {key: getattr(svc, key) for key in want}
    # SkyPilot leaves a null secret unsubstituted in the probe headers; given, it is filled in.
    assert got.pop("headers").keys() == want.pop("headers").keys()
    assert got == want


REFUSED = [p for p in CORPUS if p.stem in REFUSED_AT]


@pytest.mark.parametrize("path", REFUSED, ids=[p.stem for p in REFUSED])
def test_refused_naming_the_field(path: Path) -> None:
    with pytest.raises(SpecValidationError) as info:
        load_spec_file(path)
    paths = [issue.path for issue in info.value.issues]
    assert REFUSED_AT[path.stem] in paths, str(info.value)
    assert REFUSED_AT[path.stem] in str(info.value)
    if path.stem.startswith("unsupported-"):
        assert "not supported by Stratus yet (in SkyPilot 0.14.1: " in str(info.value)


def skypilot_python() -> str | None:
    candidates = [os.environ.get("STRATUS_SKYPILOT_PYTHON", "")]
    candidates += [str(REPO / ".skypilot-venv" / "bin" / "python")]
    candidates += [str(Path(tempfile.gettempdir()) / "skyvenv" / "bin" / "python")]
    for python in filter(None, candidates):
        if not Path(python).exists():
            continue
        probe = [python, "-c", "import importlib.metadata as m; print(m.version('skypilot'))"]
        found = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=False)
        if found.returncode == 0 and found.stdout.strip() == SKYPILOT_VERSION:
            return python
    return None


def test_recorded_verdicts_are_skypilots(tmp_path: Path) -> None:
    python = skypilot_python()
    if python is None:
        pytest.skip(f"skypilot=={SKYPILOT_VERSION} is not installed in a side venv (STRATUS_SKYPILOT_PYTHON)")
    out = tmp_path / "verdicts.json"
    home = tmp_path / "home"  # SkyPilot writes ~/.sky
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    cmd = [python, str(HERE / "skypilot_probe.py"), str(out), *map(str, CORPUS)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    live: dict[str, dict[str, Any]] = json.loads(out.read_text())
    for name, recorded in RECORDED.items():
        verdict = live[name]
        assert verdict["accepted"] == recorded["accepted"], (name, verdict.get("error"))
        if recorded["accepted"]:
            assert verdict == recorded, name
        else:  # the class of the refusal, not its wording
            assert verdict["error"].split(":")[0] == recorded["error"].split(":")[0], name
