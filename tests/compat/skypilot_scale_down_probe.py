"""Run by SkyPilot's own interpreter (a side venv with ``skypilot==0.14.1``), never by Stratus.

    <skypilot python> skypilot_scale_down_probe.py IN.json OUT.json

IN: ``{name: {"targets": {acc: qps}, "replicas": [[id, status, version, acc|null], ...], "remove": n}}``.
OUT: ``{name: [replica ids]}``, what SkyServe 0.14.1's instance-aware autoscaler
(``InstanceAwareRequestRateAutoscaler._select_replicas_to_scale_down_by_qps``) removes first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def choose(case: dict[str, Any]) -> list[int]:
    from sky.serve import autoscalers, serve_state  # only in SkyPilot's interpreter

    scaler = object.__new__(autoscalers.InstanceAwareRequestRateAutoscaler)
    scaler.target_qps_per_replica = case["targets"]
    infos = []
    for rid, status, version, acc in case["replicas"]:
        resources = SimpleNamespace(accelerators={acc: 1} if acc else None)
        handle = SimpleNamespace(launched_resources=resources)
        infos.append(
            SimpleNamespace(
                replica_id=rid,
                status=serve_state.ReplicaStatus[status],
                version=version,
                is_terminal=False,
                handle=lambda h=handle: h,
            )
        )
    return list(scaler._select_replicas_to_scale_down_by_qps(case["remove"], infos))


def main(src: str, out: str) -> None:
    cases = json.loads(Path(src).read_text())
    Path(out).write_text(json.dumps({name: choose(case) for name, case in cases.items()}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
