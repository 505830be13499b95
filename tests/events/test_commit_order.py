"""THE OUT-OF-ORDER COMMIT TEST: a tailing reader never skips an event that commits late.

Positions come from a sequence. If appender A draws position 5 and holds its transaction open
while B draws 6 and commits, a reader of "position > last seen" sees 6, moves on, and never
sees 5 when A finally commits: the classic sequence-gap bug. The store prevents it by
serializing appends with an advisory lock held from drawing positions to commit.

The harness runs concurrent appenders (several connections, some holding their transaction open
a random few ms after appending) under a running ``store.tail`` reader, then compares what the
reader saw with what was committed. The positive test uses the store; the NEGATIVE CONTROL uses
an appender that inserts with a plain ``nextval`` and no lock, and asserts that the very same
reader DOES lose events, which shows the positive test would catch the bug.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from libs.events.codec import encode
from libs.events.store import EventStore

from .helpers import sampled

Appender = Callable[[str, int], Awaitable[None]]

APPENDERS = 8
APPENDS_EACH = 30
MAX_HOLD = 0.004  # seconds a transaction stays open after appending


async def run_scenario(
    reader: EventStore, appender: Appender, *, seed: int, streams: str = "order"
) -> tuple[list[int], list[int]]:
    """Run the appenders under a tailing reader; returns (positions seen, positions committed)."""
    rng = random.Random(seed)
    stop = asyncio.Event()
    after = await reader.last_position()
    seen: list[int] = []

    async def follow() -> None:
        async for rec in reader.tail(after=after, poll_interval=0.02, stop=stop):
            seen.append(rec.position)

    async def appender_task(n: int) -> None:
        for i in range(APPENDS_EACH):
            await appender(f"service-{streams}{n}", i)
            await asyncio.sleep(rng.uniform(0, 0.002))

    tail = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0.05)  # the reader is listening before the first append
        await asyncio.gather(*(appender_task(n) for n in range(APPENDERS)))
        committed = [r.position for r in await reader.read_all(after=after, limit=100_000)]
        # Let the reader catch up with the last commit (bounded): it can only get more.
        for _ in range(500):  # bounded: 10 s
            if seen and seen[-1] >= committed[-1]:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(tail, 10)
    return seen, committed


async def test_tailing_reader_sees_every_event_once_in_order(store: EventStore, fresh_db_url: str) -> None:
    writers = await EventStore.connect(fresh_db_url, min_size=APPENDERS, max_size=APPENDERS)
    rng = random.Random(1)

    async def append(stream: str, i: int) -> None:
        if rng.random() < 0.5:
            async with writers.transaction() as tx:
                await tx.append(stream, [sampled(stream, i)])
                await asyncio.sleep(rng.uniform(0, MAX_HOLD))  # commit late
        else:
            await writers.append(stream, [sampled(stream, i)])

    try:
        seen, committed = await run_scenario(store, append, seed=1)
    finally:
        await writers.close()
    assert len(committed) == APPENDERS * APPENDS_EACH
    assert all(a < b for a, b in itertools.pairwise(seen)), "positions not strictly increasing"
    assert seen == committed, f"missed {sorted(set(committed) - set(seen))[:10]}"


async def test_negative_control_unlocked_nextval_appends_lose_events(
    store: EventStore, fresh_db_url: str
) -> None:
    """NEGATIVE CONTROL: without the append lock the same reader misses late commits."""
    pool = await asyncpg.create_pool(fresh_db_url, min_size=APPENDERS, max_size=APPENDERS)
    rng = random.Random(2)

    async def naive_append(stream: str, i: int) -> None:
        # What an append looks like without stratus_append's lock: draw a position, hold the
        # transaction open, commit. The NOTIFY (sent at commit) wakes the reader, as usual.
        tag, schema, payload = encode(sampled(stream, i))
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO stratus_events (position, event_id, stream_id, version, event_type,"
                " schema_version, payload, occurred_at)"
                " VALUES (nextval('stratus_events_position_seq'), $1, $2, $3, $4, $5, $6::jsonb, now())",
                uuid.uuid4(), stream, i + 1, tag, schema, payload.decode(),
            )  # fmt: skip
            await conn.execute("SELECT pg_notify('stratus_events', '')")
            await asyncio.sleep(rng.uniform(0, MAX_HOLD))

    missed: set[int] = set()
    deadline = time.monotonic() + 20  # bounded: a handful of rounds at most
    try:
        for round_ in range(5):
            seen, committed = await run_scenario(store, naive_append, seed=round_, streams=f"naive{round_}-")
            missed = set(committed) - set(seen)
            if missed or time.monotonic() > deadline:
                break  # else a lucky round: try again on fresh streams
    finally:
        await pool.close()
    assert missed, "the naive appender lost nothing: the commit-order test could not tell the bug apart"
