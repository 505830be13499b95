"""Fold throughput: ``python -m bench.fleet.fold [N]`` folds N synthetic recorded events.

Prints the events/second of ``libs.fleet.fold.fold`` over the synthetic fleet mix
(bench/fleet/synthetic.py), then the time to derive every status from the state it built.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fleet.synthetic import synthetic
from libs.fleet.fold import fold
from libs.fleet.status import replica_status, service_status


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    t0 = time.perf_counter()
    records = synthetic(n)
    t1 = time.perf_counter()
    state = fold(records)
    t2 = time.perf_counter()
    replicas = sum(len(s.replicas) for s in state.services.values())
    for svc in state.services.values():
        service_status(svc)
        for rep in svc.replicas.values():
            replica_status(rep)
    t3 = time.perf_counter()
    print(f"built {n} records in {t1 - t0:.1f}s")
    print(f"fold: {n} events in {t2 - t1:.2f}s ({n / (t2 - t1):,.0f} events/s)")
    print(f"{len(state.services)} services, {replicas} replicas kept; statuses in {t3 - t2:.3f}s")


if __name__ == "__main__":
    main()
