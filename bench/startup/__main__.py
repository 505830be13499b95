"""Start-up time of a service process with N events in the log.

    python -m bench.startup --events 10000 --json
    python -m bench.startup --events 10000,1000000 --json

For each N: a fresh database is filled with N events of the synthetic fleet mix (bench/fleet/
synthetic.py, 50 services: replica lifecycles, probes, scale decisions, 27% QpsSampled) by COPY.
Then a real service process (``python -m services.scheduler.main``) is started three times, each
timed from spawn to its "started at position" log line (the fleet projection is current, its
consumers about to subscribe), then stopped with SIGTERM:

- ``cold_startup_s``: no snapshot (what every start cost before snapshots: the baseline);
- (its SIGTERM writes a snapshot; then ``--tail`` more events are appended: what running
  instances append between two snapshots, STRATUS_SNAPSHOT_INTERVAL apart);
- ``startup_s``: from the snapshot plus the tail (the figure with its target): the median of
  three starts (``startup_runs_s``);
- ``projection_s``: the part of it the host spent loading the snapshot and replaying the tail
  (its own figure, in the ready line): what the log's size can change;
- ``python_s``: ``python -c 'import services.scheduler.main'``, the interpreter and imports
  alone (median of three): the floor no start-up can go below.

Uses DATABASE_URL / NATS_URL when set (a database and a stream of its own, removed after), or
starts Postgres and nats-server in a temp directory (bench/events/env.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import nats.errors

from bench.events.env import Env
from bench.startup.load import load
from libs.events.bus import connect

ROOT = Path(__file__).resolve().parents[2]
READY = b"started at position"


def service_env(dsn: str, nats_url: str, prefix: str, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": dsn, "NATS_URL": nats_url, "STRATUS_BUS_PREFIX": prefix,
        "STRATUS_HOME": str(home), "STRATUS_LOG_LEVEL": "INFO", "PYTHONPATH": str(ROOT),
    })  # fmt: skip
    return env


def timed_start(env: dict[str, str], timeout: float = 600.0) -> tuple[float, str]:
    """Seconds from spawn to the ready line, and that line; the process is then SIGTERMed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.scheduler.main"], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = b""
    try:
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            line = proc.stderr.readline()
            if not line:
                raise SystemExit(f"the service exited before it was ready (status {proc.wait()})")
            if READY in line:
                break
        elapsed = time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return elapsed, line.decode(errors="replace").strip()


def _projection_s(line: str) -> float:
    """The host's own figure in its ready line: "projection ready in 0.123s"."""
    m = re.search(r"projection ready in ([0-9.]+)s", line)
    return float(m.group(1)) if m else -1.0


def _replayed(line: str) -> int:
    m = re.search(r"\((\d+) positions replayed", line)
    return int(m.group(1)) if m else -1


def python_only(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import services.scheduler.main"], env=env, cwd=ROOT, check=True)
    return time.perf_counter() - t0


async def one(env_: Env, n: int, tail: int, home: Path) -> dict[str, Any]:
    dsn = await env_.fresh_db(f"startup{n}")
    t0 = time.perf_counter()
    kinds = await load(dsn, n)
    load_s = time.perf_counter() - t0
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env = service_env(dsn, env_.nats_url, prefix, home)
    try:
        py = statistics.median(python_only(env) for _ in range(3))
        cold, cold_line = await asyncio.to_thread(timed_start, env)
        conn = await asyncpg.connect(dsn)
        try:
            snap = await conn.fetchrow(
                "SELECT name, fingerprint, position, skipped, state FROM stratus_projection_snapshots"
            )
            assert snap is not None, "the cold start wrote no snapshot"
            if tail:
                await load(dsn, tail, first=n + 1)
            # Three starts, each from the same snapshot + tail (a start's own snapshot, written
            # on its stop, is put back to the one before the tail): the median.
            starts = []
            for _ in range(3):
                await conn.execute(
                    "UPDATE stratus_projection_snapshots SET position = $3, skipped = $4, state = $5"
                    " WHERE name = $1 AND fingerprint = $2", *snap,
                )  # fmt: skip
                starts.append(await asyncio.to_thread(timed_start, env))
        finally:
            await conn.close()
        warm, line = sorted(starts)[1]
        spread = [round(t, 3) for t, _ in starts]
        projections = [_projection_s(line) for _, line in starts]
        projection = sorted(projections)[1]
        replayed = [_replayed(line) for _, line in starts]
    finally:
        nc = await connect(env_.nats_url, name="bench-startup")
        with contextlib.suppress(nats.errors.Error):
            await nc.jetstream().delete_stream(f"STRATUS_{prefix.upper()}")
        await nc.close()
    return {
        "events": n, "tail": tail, "startup_s": round(warm, 3), "startup_runs_s": spread,
        "projection_s": projection, "projection_runs_s": projections, "replayed_runs": replayed,
        "cold_startup_s": round(cold, 3),
        "cold_projection_s": _projection_s(cold_line),
        "python_s": round(py, 3), "load_s": round(load_s, 1),
        "snapshot_position": snap[2], "snapshot_bytes": len(snap[4]),
        "telemetry_share": round(kinds["QpsSampled"] / n, 3), "ready_line": line[-120:],
    }  # fmt: skip


async def amain(args: argparse.Namespace) -> list[dict[str, Any]]:
    env = Env()
    env.start()
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"stratus-bench-startup-{uuid.uuid4().hex[:6]}"
    try:
        return [await one(env, n, args.tail, home) for n in args.events]
    finally:
        await env.drop_dbs()
        env.stop()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=lambda v: [int(x) for x in v.split(",")], default=[10_000, 1_000_000],
                   help="comma-separated log sizes; default 10000,1000000")  # fmt: skip
    p.add_argument("--tail", type=int, default=1000, help="events appended after the snapshot; 1000")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = p.parse_args()
    results = asyncio.run(amain(args))
    if len(results) > 1:
        small, large = results[0], results[-1]
        ratio = round(large["startup_s"] / small["startup_s"], 2)
        summary = {"ratio_largest_to_smallest": ratio, "target": "largest <= 2 s and <= 2x smallest"}
    else:
        summary = {}
    if args.json:
        print(json.dumps({"results": results, **summary}, indent=2))
    else:
        for r in results:
            print(f"{r['events']:>9} events: startup {r['startup_s']:.2f}s (cold {r['cold_startup_s']:.2f}s,"
                  f" python+imports {r['python_s']:.2f}s, snapshot {r['snapshot_bytes']} bytes)")  # fmt: skip
        if summary:
            print(f"ratio {summary['ratio_largest_to_smallest']} ({summary['target']})")


if __name__ == "__main__":
    main()
