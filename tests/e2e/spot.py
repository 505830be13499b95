"""The spot service both spot end-to-end tests run (test_spot_policy, test_spot_trace): what the
simulator runs (bench/spot/sim.py), and the checks on its replicas they wait on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SPEC = """\
service:
  readiness_probe: /
  replica_policy:
    min_replicas: 2
    num_overprovision: 1
    dynamic_ondemand_fallback: true
    spot_placer: dynamic_fallback
resources:
  use_spot: true
  ports: 8080
run: python -m http.server 8080
"""
LIVE = ("PENDING", "PROVISIONING", "STARTING", "READY")


def alive(svc: dict[str, Any], spot: bool, status: str = "READY") -> list[int]:
    return sorted(r["replica_id"] for r in svc["replicas"] if r["use_spot"] == spot and r["status"] == status)


def settled(spot: int) -> Callable[[dict[str, Any]], bool]:
    """``spot`` spot replicas READY, no on-demand left, nothing else alive."""

    def check(svc: dict[str, Any]) -> bool:
        live = [r for r in svc["replicas"] if r["status"] in LIVE]
        return len(alive(svc, True)) == spot and len(live) == spot

    return check
