"""``python -m bench.spot``: spot policies over capacity traces, simulated with Stratus's own
scheduler, placement, autoscaler and fold (bench/spot/sim.py), beside the offline optimum.

    python -m bench.spot --traces ../shared/traces/spothedge            # the protocol's 40 windows
    python -m bench.spot --traces ../shared/traces/spothedge --json
    python -m bench.spot --windows 20 --seed 1                           # other (random) windows
    python -m bench.spot --traces ../shared/traces/spot-traces --no-optimum
    python -m bench.spot --policy stratus --policy skyserve --offsets 100,5000

Per trace and policy: ``cost_ratio`` (cost / OnDemand's over the same windows), ``availability``
(share of ticks with ``target`` READY), mean READY replicas, launches, launch failures,
preemptions, windows; the protocol's reference figures (PROTOCOL.md) beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.spot.optimum import OptimumUnavailable, solve
from bench.spot.report import aggregate, render_table
from bench.spot.sim import POLICIES, WindowResult, simulate
from bench.spot.traces import WINDOW_TICKS, Trace, TraceError, load_traces, windows

OPTIMUM = "optimum"
DEFAULT_TRACES = "../shared/traces/spothedge"


def _offsets(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--offsets wants comma-separated tick numbers, got {text!r}"
        ) from exc
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"--offsets wants tick numbers >= 0, got {text!r}")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"want a whole number, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"want a number >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"want a whole number, got {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"want a number >= 0, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.spot", description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", default=DEFAULT_TRACES, help="a folder of zone files, or of trace folders")
    ap.add_argument("--offsets", type=_offsets, help="window start ticks, comma-separated (every trace)")
    ap.add_argument("--windows", type=_positive, help="this many random windows per trace (with --seed)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random windows (default 0)")
    names = [*POLICIES, OPTIMUM]
    ap.add_argument("--policy", action="append", choices=names, help="repeatable; default: all")
    ap.add_argument("--target", type=_positive, default=3, help="READY replicas needed (default 3)")
    ap.add_argument("--cold-start", type=_non_negative, default=4, help="ticks to READY (default 4 = 120 s)")
    ap.add_argument("--ticks", type=_positive, default=WINDOW_TICKS, help="window length in ticks (2880)")
    ap.add_argument("--no-optimum", action="store_true", help="skip the integer program")
    ap.add_argument("--optimum-time-limit", type=float, default=60.0, help="seconds per window (60)")
    ap.add_argument("--jobs", type=_positive, default=min(2, os.cpu_count() or 1), help="processes (2)")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = ap.parse_args(argv)
    if args.offsets and args.windows:
        ap.error("--offsets and --windows both choose windows: give one")
    if args.ticks <= args.cold_start:
        ap.error(f"--ticks ({args.ticks}) must exceed --cold-start ({args.cold_start})")
    return args


def _sim_job(job: tuple[Trace, int, str, int, int, int]) -> tuple[str, str, int, WindowResult]:
    trace, offset, policy, ticks, target, cold = job
    result = simulate(trace, offset, POLICIES[policy], ticks=ticks, target=target, cold_start=cold)
    return trace.name, policy, offset, result


def _opt_job(job: tuple[Trace, int, int, int, int, float]) -> tuple[str, int, float | str]:
    trace, offset, ticks, target, cold, limit = job
    try:
        return trace.name, offset, solve(trace.capacities(offset, ticks), target=target, cold_start=cold,
                                         time_limit=limit)  # fmt: skip
    except OptimumUnavailable as exc:
        return trace.name, offset, str(exc)


def run(args: argparse.Namespace) -> dict[str, Any]:
    traces = load_traces(Path(args.traces))
    chosen = args.policy or [*POLICIES, OPTIMUM]
    policies = ["ondemand", *[p for p in POLICIES if p in chosen and p != "ondemand"]]
    want_opt = OPTIMUM in chosen and not args.no_optimum
    plan = {t.name: windows(t, offsets=args.offsets, count=args.windows, seed=args.seed) for t in traces}
    sim_jobs = [(t, off, p, args.ticks, args.target, args.cold_start) for t in traces for off in plan[t.name]
                for p in policies]  # fmt: skip
    opt_jobs = [(t, off, args.ticks, args.target, args.cold_start, args.optimum_time_limit)
                for t in traces for off in plan[t.name]] if want_opt else []  # fmt: skip
    started = time.perf_counter()
    sims: list[tuple[str, str, int, WindowResult]] = []
    opts: list[tuple[str, int, float | str]] = []
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            sims = list(pool.map(_sim_job, sim_jobs, chunksize=4))
            sim_seconds = time.perf_counter() - started
            opts = list(pool.map(_opt_job, opt_jobs))
    else:
        sims = [_sim_job(j) for j in sim_jobs]
        sim_seconds = time.perf_counter() - started
        opts = [_opt_job(j) for j in opt_jobs]
    out = aggregate(traces, plan, sims, opts, target=args.target, cold_start=args.cold_start,
                    ticks=args.ticks,
                    protocol=not args.offsets and not args.windows)  # fmt: skip
    out["seconds"] = {"simulation": round(sim_seconds, 2), "total": round(time.perf_counter() - started, 2)}
    if OPTIMUM in chosen and args.no_optimum:
        out["notes"].append("optimum skipped (--no-optimum)")
    out["command"] = "python -m bench.spot " + " ".join(sys.argv[1:])
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out = run(args)
    except TraceError as exc:
        print(f"bench.spot: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(render_table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
