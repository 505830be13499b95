"""Audit replay benchmark: the whole fleet state as of the head of a 100k-event log.

    python -m bench.ops.replay [--events 100000] [--repeats 3]

Loads the synthetic fleet mix (bench/fleet/synthetic.py) into a fresh database (DATABASE_URL, or
a Postgres started here), then times the plain fold ``FLEET.as_of`` by position and by time
(batch 10,000 rows) and what ``GET /v1/replay`` does (``libs.events.checkpoints.replay``: from
the nearest audit checkpoint; the first replay leaves one every 10,000 positions), each median
against the 1 s target. Same-run references: a plain ``SELECT`` of the rows (no decoding or
folding) and ``FLEET.rebuild`` (a service's start-up fold).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from datetime import UTC, datetime

from bench.events.env import Env
from bench.events.rebuild import load
from bench.events.workload import fleet_events
from libs.events.checkpoints import replay
from libs.events.store import EventStore
from libs.fleet.projection import FLEET
from services.api.routers.replay import REPLAY_BATCH

TARGET_SECONDS = 1.0


async def main(n: int, repeats: int) -> None:
    env = Env()
    env.start()
    try:
        url = await env.fresh_db("replay")
        store = await EventStore.connect(url, min_size=1, max_size=2)
        try:
            await load(store, fleet_events(n))
            async with store.pool.acquire() as conn:
                await conn.execute("VACUUM ANALYZE stratus_events")
            head = await store.last_position()
            gc.collect()
            plain: list[float] = []
            by_pos: list[float] = []
            by_time: list[float] = []
            rebuilds: list[float] = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                rows = await store.pool.fetch("SELECT * FROM stratus_events WHERE position <= $1", head)
                plain.append(time.perf_counter() - t0)
                assert len(rows) == n
                del rows
                t0 = time.perf_counter()
                snap = await FLEET.rebuild(store)
                rebuilds.append(time.perf_counter() - t0)
                assert snap.position == head
                t0 = time.perf_counter()
                state = await FLEET.as_of(store, position=head, batch_size=REPLAY_BATCH)
                by_pos.append(time.perf_counter() - t0)
                assert state.position == head
                t0 = time.perf_counter()
                state = await FLEET.as_of(store, time=datetime.now(UTC), batch_size=REPLAY_BATCH)
                by_time.append(time.perf_counter() - t0)
                assert state.position == head
            # What GET /v1/replay does: from the nearest checkpoint (the first replay leaves them).
            t0 = time.perf_counter()
            cold = await replay(FLEET, store, position=head, batch_size=REPLAY_BATCH)
            cold_s = time.perf_counter() - t0
            assert cold.state == state
            warm_pos: list[float] = []
            warm_time: list[float] = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                got = await replay(FLEET, store, position=head - 1234, batch_size=REPLAY_BATCH)
                warm_pos.append(time.perf_counter() - t0)
                assert got.from_checkpoint > 0
                t0 = time.perf_counter()
                got = await replay(FLEET, store, time=datetime.now(UTC), batch_size=REPLAY_BATCH)
                warm_time.append(time.perf_counter() - t0)
                assert got.state == state
            services = len(state.services)
            replicas = sum(len(s.replicas) for s in state.services.values())
        finally:
            await store.close()
    finally:
        await env.drop_dbs()
        env.stop()
    figures = (
        ("plain SELECT (baseline)", plain), ("FLEET.rebuild (start-up)", rebuilds),
        ("as_of by position (no ckpt)", by_pos), ("as_of by time (no ckpt)", by_time),
        ("replay first (writes ckpts)", [cold_s]),
        ("replay --position", warm_pos), ("replay --at", warm_time),
    )  # fmt: skip
    for label, xs in figures:
        med = statistics.median(xs)
        timed = label.startswith(("replay", "as_of"))
        mark = ("PASS" if med <= TARGET_SECONDS else "SHORT") if timed else ""
        print(f"{label:<30} {n:,} events: median {med:.3f}s ({n / med:,.0f} ev/s) "
              f"x{med / statistics.median(plain):.1f} of baseline {mark}")  # fmt: skip
    print(f"state: {services} services, {replicas} replicas")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    asyncio.run(main(args.events, args.repeats))
