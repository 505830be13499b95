"""Stratus's spec parser against SkyPilot 0.14.1's own, on a corpus of service YAMLs.

The corpus is ``corpus/*.yaml`` (named ``accept-``, ``refuse-`` or ``stricter-``) plus every
YAML in ``examples/``. ``skypilot_0_14_1.json`` records what SkyPilot 0.14.1 did with each (the
checks ``sky serve up`` runs before launching: ``sky.Task.from_yaml_config`` and
``validate_service_task``, see ``skypilot_probe.py``), so the Stratus side always runs:

- SkyPilot accepts -> Stratus accepts, with the same values (SkyServe's defaults included);
- SkyPilot refuses -> Stratus refuses, naming the field;
- ``stricter-``: SkyPilot accepts nonsense (a negative count, a zero timeout) -> Stratus
  refuses, naming the field;
- ``unsupported-``: SkyPilot accepts a feature Stratus does not have (multi-node replicas) ->
  Stratus refuses, naming the field and saying so (docs/skyserve.md lists them).

``test_recorded_verdicts_are_skypilots`` re-runs SkyPilot itself on the corpus when it is
installed in a side venv: ``STRATUS_SKYPILOT_PYTHON`` names its interpreter, else a venv at
``.skypilot-venv/`` in the repository or ``skyvenv/`` in the temp directory is used
(``python -m venv <dir> && <dir>/bin/pip install skypilot==0.14.1``). Without one that test
alone is skipped. To re-record: ``<python> tests/compat/skypilot_probe.py
tests/compat/skypilot_0_14_1.json tests/compat/corpus/*.yaml examples/*.yaml``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from libs.spec import SpecValidationError, load_spec_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CORPUS = sorted(HERE.glob("corpus/*.yaml")) + sorted((REPO / "examples").glob("*.yaml"))
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
    "unsupported-multi-node": "num_nodes",
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
    assert len(CORPUS) >= 70
    assert sorted(RECORDED) == sorted(p.stem for p in CORPUS)
    for path in CORPUS:
        accepted = RECORDED[path.stem]["accepted"]
        if path.stem.startswith("refuse-"):
            assert not accepted, path.stem
        else:
            assert accepted, (path.stem, RECORDED[path.stem].get("error"))
    refused_by_stratus = ("refuse-", "stricter-", "unsupported-")
    assert set(REFUSED_AT) == {p.stem for p in CORPUS if p.stem.startswith(refused_by_stratus)}


ACCEPTED = [p for p in CORPUS if RECORDED.get(p.stem, {}).get("accepted") and p.stem not in REFUSED_AT]


@pytest.mark.parametrize("path", ACCEPTED, ids=[p.stem for p in ACCEPTED])
def test_accepted_by_both_with_skyserve_values(path: Path) -> None:
    svc = load_spec_file(path).service
    got = {name: getattr(svc, name) for name in skyserve_as_stratus(RECORDED[path.stem])}
    assert got == skyserve_as_stratus(RECORDED[path.stem])


REFUSED = [p for p in CORPUS if p.stem in REFUSED_AT]


@pytest.mark.parametrize("path", REFUSED, ids=[p.stem for p in REFUSED])
def test_refused_naming_the_field(path: Path) -> None:
    with pytest.raises(SpecValidationError) as info:
        load_spec_file(path)
    paths = [issue.path for issue in info.value.issues]
    assert REFUSED_AT[path.stem] in paths, str(info.value)
    assert REFUSED_AT[path.stem] in str(info.value)


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
