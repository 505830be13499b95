"""Section 2: append-to-handled latency through the relay, JetStream and a tracked consumer
(all in this process), against the JetStream hop alone."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import nats.errors

from bench.events.env import Env
from bench.events.report import TARGETS, Figure, Report, header, pct
from bench.events.workload import fleet_events, stream_of
from libs.events.bus import BusConfig, connect, ensure_stream
from libs.events.consumer import Consumer, ConsumerOptions
from libs.events.envelope import NewEvent, RecordedEvent
from libs.events.relay import Relay, RelayOptions
from libs.events.store import EventStore, StreamAppend, Transaction
from libs.events.types import Event


@dataclass
class LatencyRun:
    sent: dict[uuid.UUID, float] = field(default_factory=dict)  # before store.append
    committed: dict[uuid.UUID, float] = field(default_factory=dict)  # after append returned
    on_bus: dict[str, float] = field(default_factory=dict)  # core-NATS subscriber saw it
    handled: dict[uuid.UUID, float] = field(default_factory=dict)  # handler ran (tracked tx)


async def paced(rate: float, seconds: float, send: Callable[[int], Awaitable[None]]) -> int:
    """Call ``send(i)`` at ``rate``/s on an absolute schedule (no drift) for ``seconds``."""
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(i)
    return total


async def wait_until(cond: Callable[[], bool], seconds: float) -> bool:
    deadline = time.perf_counter() + seconds
    while not cond():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def burst(appender: EventStore, run: LatencyRun, events: Sequence[Event], n: int) -> dict[str, float]:
    """Pipeline capacity: append ``n`` events at once (batches of 100), time until all handled."""
    ids: list[uuid.UUID] = []
    t0 = time.perf_counter()
    for i in range(0, n, 100):
        news = [NewEvent(event=e) for e in events[i : i + 100]]
        ids += [x.event_id for x in news]
        await appender.append_batches([StreamAppend(stream_of(x.event), [x]) for x in news])
    appended = time.perf_counter() - t0
    await wait_until(lambda: all(k in run.handled for k in ids), 60)
    done = [run.handled[k] for k in ids if k in run.handled]
    elapsed = (max(done) if done else time.perf_counter()) - t0
    return {
        "burst_events": n, "burst_appended_s": appended, "burst_handled_s": elapsed,
        "burst_handled_eps": len(done) / elapsed, "burst_missing": n - len(done),
    }  # fmt: skip


async def latency_run(
    env: Env, label: str, options: ConsumerOptions, rate: float, seconds: float, burst_events: int
) -> dict[str, Any]:
    url = await env.fresh_db("latency")
    tag = uuid.uuid4().hex[:8]
    bus = BusConfig(stream=f"BENCH_{tag}", prefix=f"bench{tag}")
    appender = await EventStore.connect(url, min_size=1, max_size=2)
    relay_store = await EventStore.connect(url, min_size=1, max_size=2)
    consumer_store = await EventStore.connect(url, min_size=1, max_size=4)
    nc_relay = await connect(env.nats_url, name="bench-relay")
    nc_consumer = await connect(env.nats_url, name="bench-consumer")
    nc_probe = await connect(env.nats_url, name="bench-probe")
    run = LatencyRun()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await ensure_stream(nc_relay.jetstream(), bus)

        async def on_bus(msg: Any) -> None:
            run.on_bus[(msg.headers or {}).get("Nats-Msg-Id", "")] = time.perf_counter()

        await nc_probe.subscribe(f"{bus.prefix}.ev.>", cb=on_bus)

        async def handler(rec: RecordedEvent, tx: Transaction) -> None:
            run.handled[rec.event_id] = time.perf_counter()

        relay = Relay(relay_store, nc_relay, bus, RelayOptions(name=f"bench-{tag}"))
        consumer = Consumer(
            nc_consumer, name=f"bench-{tag}", handler=handler, store=consumer_store, bus=bus, options=options
        )
        tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(consumer.run(stop))]
        events = fleet_events(5_000)[1000:]  # replica lifecycles and QPS samples

        async def send(i: int) -> None:
            e = events[i % len(events)]
            new = NewEvent(event=e)
            run.sent[new.event_id] = time.perf_counter()
            await appender.append(stream_of(e), [new])
            run.committed[new.event_id] = time.perf_counter()

        # Warm-up: the consumer's first fetch, the relay's first publish, plan caches.
        for i in range(50):
            await send(i)
            await asyncio.sleep(1 / rate)
        if not await wait_until(lambda: len(run.handled) >= 50, 30):
            raise RuntimeError(f"latency warm-up: only {len(run.handled)} of 50 handled in 30 s")
        run = LatencyRun(on_bus=run.on_bus, handled=run.handled)  # keep the dicts callbacks write to
        warm = set(run.handled)
        run.sent.clear()
        run.committed.clear()

        cpu0 = time.process_time()
        t0 = time.perf_counter()
        total = await paced(rate, seconds, send)
        elapsed = time.perf_counter() - t0
        ok = await wait_until(lambda: all(k in run.handled for k in run.sent), 15)
        cpu = time.process_time() - cpu0
        lat = [(run.handled[k] - run.sent[k]) * 1000 for k in run.sent if k in run.handled]
        lat_c = [(run.handled[k] - run.committed[k]) * 1000 for k in run.sent if k in run.handled]
        app = [(run.committed[k] - run.sent[k]) * 1000 for k in run.sent]
        hop = [(run.on_bus[str(k)] - run.committed[k]) * 1000 for k in run.sent if str(k) in run.on_bus]
        # The five slowest, split into append call / commit->bus (relay) / bus->handled (consumer).
        worst = sorted((k for k in run.sent if k in run.handled), key=lambda k: run.sent[k] - run.handled[k])[
            :5
        ]
        slowest = [
            {
                "total_ms": (run.handled[k] - run.sent[k]) * 1000,
                "append_ms": (run.committed[k] - run.sent[k]) * 1000,
                "to_bus_ms": (run.on_bus.get(str(k), float("nan")) - run.committed[k]) * 1000,
                "bus_to_handled_ms": (run.handled[k] - run.on_bus.get(str(k), float("nan"))) * 1000,
                "sent_at_s": run.sent[k] - t0,
            }
            for k in worst
        ]
        result = {
            "label": label,
            "slowest": slowest,
            "options": asdict(options),
            "events": total,
            "rate_achieved": total / elapsed,
            "missing": sum(1 for k in run.sent if k not in run.handled),
            "all_handled": ok,
            "process_cpu_pct": 100 * cpu / (elapsed + 0.0001),
            "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99), "max_ms": max(lat or [0]),
            "commit_to_handled_p50_ms": pct(lat_c, 50), "commit_to_handled_p99_ms": pct(lat_c, 99),
            "append_call_p50_ms": pct(app, 50), "append_call_p99_ms": pct(app, 99),
            "commit_to_bus_p50_ms": pct(hop, 50), "commit_to_bus_p99_ms": pct(hop, 99),
            "warmup_events": len(warm),
            **(await burst(appender, run, events, burst_events)),
            "consumer_stats": asdict(consumer.stats),
            "relay_published": relay.published,
        }  # fmt: skip
        return result
    finally:
        stop.set()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=10)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(nats.errors.Error):
            await nc_relay.jetstream().delete_stream(bus.stream)
        for nc in (nc_probe, nc_consumer, nc_relay):
            await nc.close()
        for s in (appender, relay_store, consumer_store):
            await s.close()


async def bus_baseline(env: Env, rate: float, seconds: float) -> dict[str, Any]:
    """The JetStream hop alone: js.publish (awaits the ack) -> pull fetch(batch=1) -> received."""
    tag = uuid.uuid4().hex[:8]
    nc = await connect(env.nats_url, name="bench-bus-pub")
    nc2 = await connect(env.nats_url, name="bench-bus-sub")
    js, js2 = nc.jetstream(), nc2.jetstream()
    stream, subject = f"BENCHB_{tag}", f"benchb{tag}.x"
    await js.add_stream(name=stream, subjects=[subject])
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    stop = asyncio.Event()
    sub = await js2.pull_subscribe(subject, durable=f"b{tag}", stream=stream)

    async def pull() -> None:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch=1, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for m in msgs:
                got[m.data[:36].decode()] = time.perf_counter()
                await m.ack()

    task = asyncio.create_task(pull())
    payload = b"x" * 300
    try:

        async def send(i: int) -> None:
            key = str(uuid.uuid4())
            sent[key] = time.perf_counter()
            await js.publish(subject, key.encode() + payload, stream=stream)

        await paced(rate, 1.0, send)  # warm-up
        await wait_until(lambda: len(got) >= len(sent), 10)
        sent.clear()
        await paced(rate, seconds, send)
        await wait_until(lambda: all(k in got for k in sent), 10)
        lat = [(got[k] - sent[k]) * 1000 for k in sent if k in got]
        return {"events": len(sent), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(nats.errors.Error):
            await js.delete_stream(stream)
        await nc.close()
        await nc2.close()


async def bench_latency(env: Env, rep: Report, rate: float, seconds: float, burst_events: int) -> None:
    header(f"2. append-to-handled latency (relay + JetStream + tracked consumer, one process, {rate:.0f}/s)")
    base = await bus_baseline(env, rate, seconds)
    rep.details["latency_bus_baseline"] = base
    variants = [
        ("default ConsumerOptions()", ConsumerOptions()),
        ("ConsumerOptions(fetch_batch=1)", ConsumerOptions(fetch_batch=1)),
    ]
    runs = []
    for label, options in variants:
        r = await latency_run(env, label, options, rate, seconds, burst_events)
        runs.append(r)
        note = (
            f"{r['events']} events; p90 {r['p90_ms']:.1f} max {r['max_ms']:.1f} ms; "
            f"append call p50 {r['append_call_p50_ms']:.2f} ms; "
            f"commit->bus p50 {r['commit_to_bus_p50_ms']:.2f} ms; "
            f"commit->handled p50 {r['commit_to_handled_p50_ms']:.2f} ms; missing {r['missing']}"
        )
        for p in (50, 99):
            target = TARGETS["latency_p50_ms"] if p == 50 else None
            rep.add(Figure(
                "latency", f"p{p} append->handled, {label}", r[f"p{p}_ms"], "ms",
                f"<= {target:.0f}" if target else "", (r[f"p{p}_ms"] <= target) if target else None,
                "JetStream hop only", base[f"p{p}_ms"], note=note,
            ))  # fmt: skip
        print(f"    {note}", flush=True)
        rep.add(Figure(
            "latency", f"  capacity, burst of {r['burst_events']}, {label}", r["burst_handled_eps"], "ev/s",
            note=f"appended in {r['burst_appended_s']:.2f}s; all handled at {r['burst_handled_s']:.2f}s",
        ))  # fmt: skip
    rep.details["latency_runs"] = runs
