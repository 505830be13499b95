"""Section 3: the fleet projection's rebuild from Postgres, against the raw SELECT of the same
pages, with its steps timed apart and the pure in-memory fold."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence

from bench.events.env import Env
from bench.events.report import TARGETS, Figure, GcClock, Report, header
from bench.events.workload import as_batches, fleet_events
from libs.events.envelope import RecordedEvent
from libs.events.projection import Projection
from libs.events.store import _SELECT, EventStore, row_to_recorded
from libs.events.types import Event
from libs.fleet.fold import apply as fleet_apply
from libs.fleet.fold import fold as fleet_fold
from libs.fleet.fold import fold_events
from libs.fleet.projection import FLEET as SHIPPED_FLEET
from libs.fleet.state import FleetState

# The fleet projection exactly as services build it (libs/runtime/host.py, services/api/deps.py).
# The projection the services run (libs/fleet/projection.py: batch fold on rebuild), and the
# per-event ``apply`` variant it replaced, kept as a comparison row.
FLEET = SHIPPED_FLEET
FLEET_PER_EVENT: Projection[FleetState] = Projection(initial=FleetState, apply=fleet_apply)


async def raw_select_pass(store: EventStore, batch: int = 1000) -> tuple[int, float]:
    """The rows ``read_all`` fetches, page by page, with no decoding (the baseline)."""
    sql = f"{_SELECT} WHERE position > $1 ORDER BY position LIMIT $2"
    n, position = 0, 0
    t0 = time.perf_counter()
    async with store.pool.acquire() as conn:
        while True:
            rows = await conn.fetch(sql, position, batch)
            n += len(rows)
            if rows:
                position = rows[-1][0]
            if len(rows) < batch:
                break
    return n, time.perf_counter() - t0


async def breakdown_pass(store: EventStore, batch: int = 1000) -> dict[str, float]:
    """What ``FLEET.rebuild`` does, page by page, with its steps timed apart: the SQL fetch (same
    query as ``read_all``), row -> RecordedEvent (``row_to_recorded``) and ``FLEET.fold``
    (``apply`` per event). GC pauses land in whichever step triggers them; their total is
    reported separately."""
    sql = f"{_SELECT} WHERE position > $1 ORDER BY position LIMIT $2"
    t_fetch = t_decode = t_fold = 0.0
    state = FLEET.initial()
    position = n = 0
    cpu0 = time.process_time()
    with GcClock() as gcc:
        async with store.pool.acquire() as conn:
            while True:
                t0 = time.perf_counter()
                rows = await conn.fetch(sql, position, batch)
                t1 = time.perf_counter()
                recs = [row_to_recorded(r) for r in rows]
                t2 = time.perf_counter()
                state = FLEET.fold(state, recs)
                t3 = time.perf_counter()
                t_fetch += t1 - t0
                t_decode += t2 - t1
                t_fold += t3 - t2
                n += len(rows)
                if rows:
                    position = rows[-1][0]
                if len(rows) < batch:
                    break
    return {
        "events": n, "fetch_s": t_fetch, "decode_s": t_decode, "fold_s": t_fold,
        "cpu_s": time.process_time() - cpu0, "gc_s": gcc.spent, "gc_collections": gcc.collections,
    }  # fmt: skip


async def pure_fold(store: EventStore) -> dict[str, float]:
    """Fold times over records already decoded in memory (no I/O, no decoding), as
    bench/fleet/fold.py measures: ``FLEET.fold`` (``apply`` per event, what ``rebuild`` runs) and
    ``libs.fleet.fold.fold`` (the batch fold). The preloaded records are moved out of the GC's
    view (``gc.freeze``) so that full collections do not rescan a million records that a real
    rebuild never holds at once."""
    sql = f"{_SELECT} WHERE position > $1 ORDER BY position LIMIT $2"
    records: list[RecordedEvent] = []
    position = 0
    async with store.pool.acquire() as conn:
        while True:
            rows = await conn.fetch(sql, position, 1000)
            records += [row_to_recorded(r) for r in rows]
            if len(rows) < 1000:
                break
            position = rows[-1][0]
    gc.collect()
    gc.freeze()
    try:
        t0 = time.perf_counter()
        a = FLEET.fold(FLEET.initial(), records)
        t1 = time.perf_counter()
        b = fleet_fold(records)
        t2 = time.perf_counter()
        assert set(a.services) == set(b.services)
        del a, b
    finally:
        del records
        gc.unfreeze()
        gc.collect()
    return {"apply_fold_s": t1 - t0, "batch_fold_s": t2 - t1}


async def rebuild_batch_fold(store: EventStore, batch: int = 1000) -> FleetState:
    """Proposal, not the shipped path: ``Projection.rebuild``'s loop (same ``read_all`` pages and
    decoding) folding each page with libs.fleet.fold.fold instead of ``apply`` per event."""
    state = FleetState()
    position = 0
    while True:
        page = await store.read_all(after=position, limit=batch)
        state = fleet_fold(page, state)
        if page:
            position = page[-1].position
        if len(page) < batch:
            return state


async def load(store: EventStore, events: Sequence[Event], batch: int = 1000) -> tuple[int, float]:
    t0 = time.perf_counter()
    for i in range(0, len(events), batch):
        await store.append_batches(as_batches(events[i : i + batch]))
    return len(events), time.perf_counter() - t0


async def bench_rebuild(env: Env, rep: Report, sizes: Sequence[int], repeats: int) -> None:
    header(f"3. fleet projection rebuild from Postgres (FLEET.rebuild, batch_size=1000; median of {repeats})")
    url = await env.fresh_db("rebuild")
    store = await EventStore.connect(url, min_size=1, max_size=2)
    batched_target = TARGETS["append_batched_eps"]
    try:
        loaded = 0
        for size in sorted(sizes):
            # Load with append_batches. The generated events are dropped before anything is timed:
            # a service rebuilding at start-up does not hold a million events in memory, and a
            # big live heap would make every full GC (and so the rebuild) slower.
            t0 = time.perf_counter()
            events = fleet_events(size)
            gen = time.perf_counter() - t0
            n, dt = await load(store, events[loaded:])
            loaded = size
            expected = fold_events((e, 0.0) for e in events)
            want_services = set(expected.services)
            want_replicas = sum(len(s.replicas) for s in expected.services.values())
            del events, expected
            gc.collect()
            rep.add(Figure(
                "rebuild", f"load: append_batches 1000/batch, to {size:,}", n / dt, "ev/s",
                f">= {batched_target:,.0f}", n / dt >= batched_target,
                note=f"{n:,} events in {dt:.1f}s, sustained, table growing (generated in {gen:.1f}s)",
            ))  # fmt: skip
            async with store.pool.acquire() as conn:
                await conn.execute("VACUUM ANALYZE stratus_events")
                table_mb = float(await conn.fetchval("SELECT pg_total_relation_size('stratus_events') / 1e6"))

            selects: list[float] = []
            rebuilds: list[float] = []
            cpus: list[float] = []
            gcs: list[float] = []
            protos: list[float] = []
            bds: list[dict[str, float]] = []
            for _ in range(repeats):
                sn, sdt = await raw_select_pass(store)
                assert sn == size, (sn, size)
                selects.append(sdt)
                gc.collect()
                cpu0 = time.process_time()
                t0 = time.perf_counter()
                with GcClock() as gcc:
                    snap = await FLEET.rebuild(store)
                rebuilds.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - cpu0)
                gcs.append(gcc.spent)
                replicas = sum(len(s.replicas) for s in snap.state.services.values())
                ok = snap.position == size and set(snap.state.services) == want_services
                assert ok and replicas == want_replicas, (snap.position, replicas, want_replicas)
                del snap
                gc.collect()
                t0 = time.perf_counter()
                proto = await FLEET_PER_EVENT.rebuild(store)
                protos.append(time.perf_counter() - t0)
                assert proto.position == size and set(proto.state.services) == want_services
                del proto
                gc.collect()
                bds.append(await breakdown_pass(store))
                gc.collect()
            # each step's median over the repeats (the machine's load varies from pass to pass)
            bd = {k: statistics.median(b[k] for b in bds) for k in bds[0]}
            pf = await pure_fold(store)

            rdt, sdt = statistics.median(rebuilds), statistics.median(selects)
            cpu, gct = statistics.median(cpus), statistics.median(gcs)
            target = TARGETS["rebuild_1m_s"] if size >= 1_000_000 else None
            label = f"{size // 1000}k" if size < 1_000_000 else f"{size / 1e6:g}M"
            rep.add(Figure(
                "rebuild", f"rebuild {label} events (read+decode+fold)", rdt, "s",
                f"<= {target:.0f}" if target else "", (rdt <= target) if target else None,
                "raw SELECT pages", sdt,
                note=(f"{size / rdt:,.0f} ev/s; runs {'/'.join(f'{x:.2f}' for x in rebuilds)} s;"
                      f" Python CPU {cpu:.1f}s, of which GC {gct:.1f}s; {len(want_services)} services,"
                      f" {want_replicas} replicas kept; table {table_mb:.0f} MB"),
            ))  # fmt: skip
            pdt = statistics.median(protos)
            rep.add(Figure(
                "rebuild", f"  diag: rebuild {label} with per-event apply (the old path)", pdt, "s",
                f"<= {target:.0f}" if target else "", (pdt <= target) if target else None,
                "FLEET.rebuild", rdt,
                note=f"runs {'/'.join(f'{x:.2f}' for x in protos)} s; replaced by the batch fold",
            ))  # fmt: skip
            rep.add(Figure(
                "rebuild", f"  instrumented rebuild ({label}): SQL fetch", bd["fetch_s"], "s",
                baseline="raw SELECT pages", baseline_value=sdt, note="same query as the raw pass",
            ))  # fmt: skip
            rep.add(
                Figure("rebuild", f"  instrumented rebuild ({label}): row_to_recorded", bd["decode_s"], "s")
            )
            rep.add(Figure("rebuild", f"  instrumented rebuild ({label}): FLEET.fold", bd["fold_s"], "s"))
            rep.add(Figure(
                "rebuild", f"  instrumented rebuild ({label}): GC pauses", bd["gc_s"], "s",
                note=f"{bd['gc_collections']:.0f} collections, inside the three steps above",
            ))  # fmt: skip
            rep.add(Figure(
                "rebuild", f"pure fold in memory, FLEET.fold/apply ({label})", pf["apply_fold_s"], "s",
                note="what rebuild folds with: apply() per event",
            ))  # fmt: skip
            rep.add(Figure(
                "rebuild", f"pure fold in memory, libs.fleet.fold.fold ({label})", pf["batch_fold_s"], "s",
                baseline="FLEET.fold/apply", baseline_value=pf["apply_fold_s"],
                note="the batch fold, same records",
            ))  # fmt: skip
            rep.details[f"rebuild_{size}"] = {
                "rebuild_s": rebuilds, "rebuild_cpu_s": cpus, "rebuild_gc_s": gcs, "raw_select_s": selects,
                "proposal_batch_fold_rebuild_s": protos, "breakdown_runs": bds,
                "table_mb": table_mb, "load_s": dt, **pf, **{f"breakdown_{k}": v for k, v in bd.items()},
            }  # fmt: skip
    finally:
        await store.close()
