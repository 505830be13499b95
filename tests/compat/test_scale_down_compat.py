"""An instance-aware service (per-accelerator ``target_qps_per_replica``) scales down as SkyServe
0.14.1's instance-aware autoscaler does: the replicas of the lowest target QPS go first, then the
older version, then the newer id; the status orders nothing (its key is the same list for every
replica). The scheduler's plan is checked on a table, and the table against SkyPilot's own
``_select_replicas_to_scale_down_by_qps`` when it is installed in a side venv."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from libs.events.types import EndpointAssigned, Event, Placement, ScaleDecided, ServiceRequested
from libs.fleet import fold_events
from libs.fleet.policy import autoscale_policy, instance_aware_scale_down
from libs.spec import load_spec
from services.scheduler.plan import RequestTermination, SchedulerConfig, plan
from tests.compat.test_skypilot_compat import skypilot_python
from tests.unit.fleet_builders import NAME, R, replica_events

HERE = Path(__file__).resolve().parent
TARGETS = {"A100": 10.0, "L4": 2.0}
SPEC = """
service:
  readiness_probe: /
  load_balancing_policy: instance_aware_least_load
  replica_policy: {min_replicas: 1, max_replicas: 4, target_qps_per_replica: {A100: 10, L4: 2}}
resources: {ports: 8080, accelerators: {A100: 1, L4: 1}}
run: serve
"""

# name -> (replicas [(id, status, accelerator)], target) and the ids removed, first first
CASES: dict[str, tuple[list[tuple[int, str, str | None]], int, list[int]]] = {
    "lowest target QPS first, whatever the status": (
        [(1, "READY", "A100"), (2, "READY", "L4"), (3, "PROVISIONING", "A100"), (4, "READY", "L4")],
        2, [4, 2]),
    "same accelerator: the newer id first": (
        [(1, "READY", "L4"), (2, "STARTING", "L4"), (3, "READY", "A100")], 2, [2]),
    "an accelerator without a target counts as the smallest": (
        [(1, "READY", "L4"), (2, "READY", "A100"), (3, "READY", "H100")], 1, [3, 1]),
    "a not-ready A100 outlives a ready L4": (
        [(1, "NOT_READY", "A100"), (2, "READY", "L4"), (3, "PENDING", "A100")], 2, [2]),
}  # fmt: skip


def _planned(replicas: list[tuple[int, str, str | None]], target: int) -> list[int]:
    spec = msgspec.to_builtins(load_spec(SPEC))
    events: list[tuple[Event, float]] = [
        (ServiceRequested(service=NAME, spec=spec), 0.0),
        (EndpointAssigned(service=NAME, endpoint="http://127.0.0.1:30001"), 0.5),
        (ScaleDecided(service=NAME, target=target, spot=0, on_demand=target), 5.0),
    ]
    t = 10.0
    for rid, status, acc in replicas:
        placement = Placement(accelerators={acc: 1.0} if acc else {})
        for e in replica_events(R(rid, status)):
            if hasattr(e, "placement"):
                e = msgspec.structs.replace(e, placement=placement)
            events.append((e, t))
            t += 1.0
    svc = fold_events(events).services[NAME]
    assert instance_aware_scale_down(svc.policy.autoscale)
    actions = plan(svc, 1000.0, SchedulerConfig(retry_backoff_seconds=0.0))
    return [a.replica_id for a in actions if isinstance(a, RequestTermination)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_instance_aware_scale_down_removes_lowest_target_qps_first(case: str) -> None:
    replicas, target, removed = CASES[case]
    assert _planned(replicas, target) == removed


def test_fallback_and_plain_services_keep_the_status_order() -> None:
    plain = autoscale_policy(load_spec(SPEC.replace("instance_aware_least_load", "least_load").replace(
        "{A100: 10, L4: 2}", "5")))  # fmt: skip
    assert not instance_aware_scale_down(plain)
    spot = SPEC.replace("max_replicas: 4,", "max_replicas: 4, base_ondemand_fallback_replicas: 1,").replace(
        "L4: 1}", "L4: 1}, use_spot: true")  # fmt: skip
    assert not instance_aware_scale_down(autoscale_policy(load_spec(spot)))  # SkyServe's fallback autoscaler


def test_the_table_is_skyserves(tmp_path: Path) -> None:
    python = skypilot_python()
    if python is None:
        pytest.skip("skypilot==0.14.1 is not installed in a side venv (STRATUS_SKYPILOT_PYTHON)")
    cases: dict[str, dict[str, Any]] = {
        name: {
            "targets": TARGETS,
            "replicas": [[rid, status, 1, acc] for rid, status, acc in replicas],
            "remove": len(replicas) - target,
        }
        for name, (replicas, target, _) in CASES.items()
    }
    (tmp_path / "in.json").write_text(json.dumps(cases))
    home = tmp_path / "home"
    home.mkdir()
    probe = HERE / "skypilot_scale_down_probe.py"
    cmd = [python, str(probe), str(tmp_path / "in.json"), str(tmp_path / "out.json")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "HOME": str(home)})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    chosen = json.loads((tmp_path / "out.json").read_text())
    assert chosen == {name: removed for name, (_, _, removed) in CASES.items()}
