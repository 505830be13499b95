"""Append throughput with 1, 4 and 16 concurrent appenders, each a process of its own.

    python -m bench.startup.appenders --json [--seconds 5] [--appenders 1,4,16]

Each appender is a separate OS process with its own connection, appending one event per call
(``EventStore.append``, its own stream, no expected version) for ``--seconds``; the figure is the
total events per second. The baseline, measured in the same run: the same processes doing plain
``INSERT`` of the same rows into a copy of ``stratus_events`` (no function, no append lock), so
the ratio shows what the commit-ordering lock costs as appenders are added.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.events.env import Env
from libs.events.store import EventStore
from libs.events.types import QpsSampled

_PLAIN = (
    "INSERT INTO bench_plain (position, event_id, stream_id, version, event_type, schema_version,"
    " payload, occurred_at) VALUES (nextval('bench_plain_seq'), $1, $2, $3, 'QpsSampled', 2, $4::jsonb, $5)"
)


def _event(i: int) -> QpsSampled:
    return QpsSampled(service="s", router_id="r", window_start=float(i), window_seconds=10.0, requests=i)


async def _appender(dsn: str, mode: str, seconds: float, start_at: float) -> int:
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    n = 0
    if mode == "stratus":
        store = await EventStore.connect(dsn, min_size=1, max_size=1)
        try:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                await store.append(stream, [_event(n)])
                n += 1
        finally:
            await store.close()
        return n
    conn = await asyncpg.connect(dsn)
    try:
        payload = json.dumps({"type": "QpsSampled", "service": "s"})
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            await conn.execute(_PLAIN, uuid.uuid4(), stream, n + 1, payload, datetime.now(UTC))
            n += 1
    finally:
        await conn.close()
    return n


def _run(args: tuple[str, str, float, float]) -> int:
    return asyncio.run(_appender(*args))


def measure(dsn: str, mode: str, appenders: int, seconds: float) -> float:
    start_at = time.time() + 1.5  # every process connected before the clock starts
    with mp.get_context("spawn").Pool(appenders) as pool:
        counts = pool.map(_run, [(dsn, mode, seconds, start_at)] * appenders)
    return sum(counts) / seconds


async def prepare(env: Env) -> str:
    dsn = await env.fresh_db("appenders")
    store = await EventStore.connect(dsn)
    try:
        await store.pool.execute(
            "CREATE TABLE bench_plain (LIKE stratus_events INCLUDING ALL); CREATE SEQUENCE bench_plain_seq"
        )
    finally:
        await store.close()
    return dsn


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.startup.appenders", description=__doc__.split("\n")[0])
    p.add_argument("--appenders", type=lambda v: [int(x) for x in v.split(",")], default=[1, 4, 16])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=2, help="alternations of ours and the baseline")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    env = Env()
    env.start()
    try:
        dsn = asyncio.run(prepare(env))
        results: list[dict[str, Any]] = []
        for k in args.appenders:
            ours = [measure(dsn, "stratus", k, args.seconds) for _ in range(args.rounds)]
            plain = [measure(dsn, "plain", k, args.seconds) for _ in range(args.rounds)]
            results.append({
                "appenders": k, "events_per_s": round(statistics.median(ours)),
                "plain_insert_per_s": round(statistics.median(plain)),
                "ratio_to_plain": round(statistics.median(ours) / statistics.median(plain), 2),
            })  # fmt: skip
        base = results[0]["events_per_s"]
        for r in results:
            r["vs_one_appender"] = round(r["events_per_s"] / base, 2)
        out = {"results": results, "target": "events_per_s does not fall as appenders are added"}
        print(json.dumps(out, indent=2) if args.json else out)
    finally:
        asyncio.run(env.drop_dbs())
        env.stop()


if __name__ == "__main__":
    main()
