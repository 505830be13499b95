"""Fault tests: real processes killed with SIGKILL, a nats-server restarted, poison messages.

The relay (``python -m libs.events relay``) and a consumer (``tests/events/fault_consumer.py``)
run as separate OS processes against a nats-server of this test's own, so that it may be
restarted whatever the session's NATS is.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import IO

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from libs.events.bus import H_MSG_ID, H_POSITION, H_SCHEMA, H_TYPE, BusConfig, OutboxMessage
from libs.events.consumer import Consumer, ConsumerOptions
from libs.events.envelope import RecordedEvent
from libs.events.errors import PermanentError, StoreUnavailable, TransientError
from libs.events.store import EventStore, Transaction
from libs.events.types import ServiceTerminated
from libs.servers.nats_server import NatsServer

from .helpers import eventually, publish_all, publish_recorded, requested, sampled

REPO = Path(__file__).resolve().parents[2]


class Proc:
    """A child process we may SIGKILL and start again; output goes to one log file."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.cmd = cmd
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self._out = self._out or self.log.open("ab")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            self.cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.starts += 1

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.tail()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._out is not None:
            self._out.close()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


async def derived_positions(store: EventStore) -> list[int]:
    rows = await store.pool.fetch("SELECT payload->>'reason' FROM stratus_events WHERE stream_id = 'derived'")
    return [int(r[0]) for r in rows]


async def count_derived(store: EventStore) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM stratus_events WHERE stream_id = 'derived'"))


async def relay_offset(store: EventStore) -> int:
    return int(await store.pool.fetchval("SELECT coalesce(max(position), 0) FROM stratus_relay_offsets"))


async def test_killed_relay_killed_consumer_and_restarted_nats_lose_nothing(
    store: EventStore, fresh_db_url: str, dedicated_nats: NatsServer, unique: str, tmp_path: Path
) -> None:
    n, per_append = 2000, 10
    bus = BusConfig(stream=f"F_{unique}", prefix=f"f{unique}")
    common = ["--database-url", fresh_db_url, "--nats-url", dedicated_nats.url, "--stream", bus.stream]
    relay = Proc(
        [sys.executable, "-m", "libs.events", "relay", *common, "--prefix", bus.prefix, "--batch-size", "64"],
        tmp_path / "relay.log",
    )
    consumer = Proc(
        [
            sys.executable,
            "-m",
            "tests.events.fault_consumer",
            *common,
            "--prefix",
            bus.prefix,
            "--ack-wait",
            "2",
        ],
        tmp_path / "consumer.log",
    )

    async def relay_published() -> bool:
        return await relay_offset(store) > 0

    async def consumer_handled() -> bool:
        return await count_derived(store) > 0

    async def all_handled() -> bool:
        return await count_derived(store) >= n

    async def relay_caught_up() -> bool:
        return await relay_offset(store) == await store.last_position()

    try:
        relay.start()
        consumer.start()
        for i in range(n // per_append):
            await store.append(
                "service-src", [sampled("src", j) for j in range(i * per_append, (i + 1) * per_append)]
            )
            await asyncio.sleep(0.01)
            if i == 50:  # kill -9 the relay while it publishes, restart it
                await eventually(relay_published, within=30)
                relay.kill9()
                relay.start()
            if i == 100:  # kill -9 the consumer while it handles, restart it
                await eventually(consumer_handled, within=30)
                consumer.kill9()
                consumer.start()
            if i == 150:  # restart nats-server under both
                await asyncio.to_thread(dedicated_nats.stop)
                await asyncio.sleep(0.3)
                await asyncio.to_thread(dedicated_nats.start)
        await eventually(all_handled, within=120, every=0.2)
        await asyncio.sleep(2.5)  # past ack_wait: a late redelivery would show as a second effect
        positions = await derived_positions(store)
        sources = [r.position for r in await store.read_all(limit=10 * n) if r.stream_id == "service-src"]
        assert len(sources) == n
        twice = [p for p, k in Counter(positions).items() if k > 1]
        assert not twice, f"handled more than once: {twice[:10]}"
        assert sorted(positions) == sources, "lost or foreign effects"
        assert await store.handled_positions("fault-consumer") == sources
        # The relay catches up with the whole log (derived events included).
        await eventually(relay_caught_up, within=30)
        assert relay.starts == 2 and consumer.starts == 2
        assert consumer.terminate() == 0, consumer.tail()
        assert relay.terminate() == 0, relay.tail()
    except BaseException:
        print("---- relay log\n", relay.tail(), "\n---- consumer log\n", consumer.tail())
        raise
    finally:
        relay.cleanup()
        consumer.cleanup()


# --------------------------------------------------------------------------- poison and retries


def fast_options(**kw: float) -> ConsumerOptions:
    return ConsumerOptions(
        fetch_timeout=0.2, backoff_initial=kw.pop("backoff_initial", 0.05), backoff_max=1.0,
        max_attempts=int(kw.pop("max_attempts", 3)), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


async def run_until(consumer: Consumer, done: object, within: float = 15.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await eventually(done, within=within)  # type: ignore[arg-type]
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_poison_messages_are_dead_lettered_and_do_not_block_the_rest(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    journal: list[tuple[str, str]] = []

    async def handler(rec: RecordedEvent, tx: Transaction) -> None:
        journal.append((rec.event.service, "called"))
        if rec.event.service == "refused":
            raise PermanentError("replica 3 does not belong to this service")
        if rec.event.service == "buggy":
            raise KeyError("a bug that never goes away")
        await tx.append(
            "derived", [rec.caused(ServiceTerminated(service="derived", reason=str(rec.position)))]
        )
        journal.append((rec.event.service, "handled"))

    good1 = (await store.append("service-good1", [requested("good1")])).last_position
    await store.append("service-refused", [requested("refused")])
    await store.append("service-buggy", [requested("buggy")])
    good2 = (await store.append("service-good2", [requested("good2")])).last_position
    records = await store.read_all()
    # Bus order: good1, undecodable, refused, unknown type, wrong schema, buggy, good2.
    await publish_recorded(js, bus, records[0])
    await js.publish(
        f"{bus.prefix}.ev.web.ServiceRequested", b"\x00not json",
        headers={H_MSG_ID: str(uuid.uuid4()), H_TYPE: "ServiceRequested", H_POSITION: "900"},
        stream=bus.stream,
    )  # fmt: skip
    await publish_recorded(js, bus, records[1])
    unknown = OutboxMessage.from_recorded(records[0]).headers() | {
        H_TYPE: "NoSuchEvent",
        H_MSG_ID: "unknown-1",
    }
    await js.publish(f"{bus.prefix}.ev.web.NoSuchEvent", b"{}", headers=unknown, stream=bus.stream)
    newer = OutboxMessage.from_recorded(records[0])
    schema_99 = newer.headers() | {H_SCHEMA: "99", H_MSG_ID: "schema-99"}  # no upcaster knows it
    await js.publish(newer.subject(bus), newer.payload, headers=schema_99, stream=bus.stream)
    await publish_recorded(js, bus, records[2])
    await publish_recorded(js, bus, records[3])

    consumer = Consumer(
        nc, name="c-poison", handler=handler, store=store, bus=bus,
        options=fast_options(max_attempts=3, backoff_initial=0.3),
    )  # fmt: skip

    async def settled() -> bool:
        return len(await store.dead_letters("c-poison")) == 5

    await run_until(consumer, settled)
    letters = await store.dead_letters("c-poison")
    [wrong_schema] = [d for d in letters if "schema v99" in str(d["reason"])]
    assert str(wrong_schema["reason"]).startswith("EventDecodeError")
    reasons = {str(d["reason"]).split(":")[0]: d for d in letters if d is not wrong_schema}
    assert set(reasons) == {"EventDecodeError", "PermanentError", "UnknownEventType", "KeyError"}
    assert reasons["EventDecodeError"]["position"] == 900
    assert reasons["PermanentError"]["position"] == records[1].position
    assert "does not belong" in str(reasons["PermanentError"]["reason"])
    assert reasons["KeyError"]["deliveries"] == 3 and "after 3 deliveries" in str(
        reasons["KeyError"]["reason"]
    )
    assert reasons["UnknownEventType"]["event_id"] == str(records[0].event_id)
    assert sorted(await derived_positions(store)) == [good1, good2]
    # The message behind the bug was handled while the bug was still being retried.
    assert journal.index(("good2", "handled")) < max(i for i, j in enumerate(journal) if j[0] == "buggy")
    assert journal.count(("buggy", "called")) == 3 and journal.count(("refused", "called")) == 1
    info = await js.consumer_info(bus.stream, "c-poison")
    assert info.num_pending == 0 and info.num_ack_pending == 0


async def test_transient_errors_are_retried_then_succeed(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    await store.append("service-web", [requested("web"), sampled("web", 1)])
    await publish_all(js, bus, store)
    attempts: Counter[int] = Counter()
    failures = [TransientError("the scheduler's projection is behind"), StoreUnavailable("pg restarting")]

    async def flaky(rec: RecordedEvent, tx: Transaction) -> None:
        attempts[rec.position] += 1
        if rec.position == 1 and attempts[1] <= len(failures):
            raise failures[attempts[1] - 1]
        await tx.append(
            "derived", [rec.caused(ServiceTerminated(service="derived", reason=str(rec.position)))]
        )

    consumer = Consumer(
        nc, name="c-flaky", handler=flaky, store=store, bus=bus, options=fast_options(max_attempts=2)
    )

    async def both_handled() -> bool:
        return len(await derived_positions(store)) == 2

    await run_until(consumer, both_handled)
    assert attempts == Counter({1: 3, 2: 1})  # naked twice, beyond max_attempts: transient never gives up
    assert consumer.stats.retried == 2 and consumer.stats.dead_lettered == 0
    assert await store.dead_letters("c-flaky") == []
    assert sorted(await derived_positions(store)) == [1, 2]
    assert await store.handled_positions("c-flaky") == [1, 2]
