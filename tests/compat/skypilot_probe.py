"""Run by SkyPilot's own interpreter (a side venv with ``skypilot==0.14.1``), never by Stratus.

    <skypilot python> skypilot_probe.py OUT.json FILE.yaml ...   -> OUT.json: {name: verdict}

For each YAML it does what ``sky serve up`` does before launching anything: the task is built
from the YAML (``sky.Task.from_yaml_config``, which checks the schemas and builds the service
spec) and ``sky.serve.serve_utils.validate_service_task`` runs on it. A verdict is
``{"accepted": true, "service": {...}, "ports": [...], "num_nodes": N}`` with the service spec's
fields as SkyServe holds them, or ``{"accepted": false, "error": "..."}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SERVICE_FIELDS = (
    "readiness_path", "initial_delay_seconds", "readiness_timeout_seconds",
    "endpoint_probe_interval_seconds", "consecutive_failure_threshold_timeout", "lb_stream_timeout_seconds",
    "post_data", "readiness_headers", "min_replicas", "max_replicas", "target_qps_per_replica",
    "upscale_delay_seconds", "downscale_delay_seconds", "num_overprovision",
    "base_ondemand_fallback_replicas", "dynamic_ondemand_fallback", "spot_placer",
    "load_balancing_policy", "ports",
)  # fmt: skip


def verdict(path: Path) -> dict[str, Any]:
    import sky  # only in SkyPilot's interpreter
    from sky.serve import serve_utils
    from sky.utils import yaml_utils

    try:
        config = yaml_utils.safe_load(path.read_text())
        task = sky.Task.from_yaml_config(config)
        serve_utils.validate_service_task(task, pool=False)
    except Exception as exc:  # any refusal is a verdict, whatever its class
        return {"accepted": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    service = task.service
    assert service is not None
    ports = sorted({p for r in task.resources for p in (r.ports or [])})
    return {
        "accepted": True,
        "service": {name: getattr(service, name) for name in SERVICE_FIELDS},
        "ports": ports,
        "num_nodes": task.num_nodes,
    }


def main(out: str, paths: list[str]) -> None:
    # A file, not stdout: SkyPilot prints progress (catalog updates) on stdout.
    verdicts = {Path(p).stem: verdict(Path(p)) for p in paths}
    Path(out).write_text(json.dumps(verdicts, indent=1, sort_keys=True, default=str) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
