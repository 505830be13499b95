"""Tracking reduced to what de-duplication needs: rows above a floor, pruned below it."""

from __future__ import annotations

import asyncio

from libs.events.store import EventStore
from libs.events.tracking import floor, init_floor, prune

from .helpers import requested, sampled


async def track(store: EventStore, consumer: str, position: int) -> bool:
    async with store.transaction() as tx:
        return await tx.track(consumer, position)


async def test_prune_stops_below_the_first_position_not_handled(store: EventStore) -> None:
    positions = [(await store.append("s", [requested(f"x{i}")])).last_position for i in range(6)]
    for p in positions[:2] + positions[3:]:  # position 3 is still in flight (nak'ed, say)
        assert await track(store, "c", p)
    assert await prune(store.pool, "c", ["ServiceRequested"]) == (positions[1], 2)
    assert await store.handled_positions("c") == positions[3:]
    # The redelivered in-flight one is handled once; pruned ones still count as handled.
    assert await track(store, "c", positions[2])
    assert not await track(store, "c", positions[0]) and not await track(store, "c", positions[2])
    assert await prune(store.pool, "c", ["ServiceRequested"]) == (positions[-1], 4)
    assert await store.handled_positions("c") == []
    assert not await track(store, "c", positions[4])  # below the floor: already handled


async def test_events_of_other_types_and_dead_letters_do_not_hold_the_floor(store: EventStore) -> None:
    a = (await store.append("s", [requested("a")])).last_position
    await store.append("s", [sampled("a", 1)])  # not this consumer's type
    dead = (await store.append("s", [requested("b")])).last_position
    c = (await store.append("s", [requested("c")])).last_position
    assert await track(store, "c1", a) and await track(store, "c1", c)
    async with store.transaction() as tx:
        await tx.record_dead_letter("c1", reason="poison", position=dead)
    assert (await prune(store.pool, "c1", ["ServiceRequested"]))[0] == c


async def test_a_new_consumer_starts_its_floor_where_it_starts_delivering(store: EventStore) -> None:
    for i in range(3):
        await store.append("s", [requested(f"x{i}")])
    assert await init_floor(store.pool, "late", 3)
    assert not await init_floor(store.pool, "late", 2)  # never goes back
    assert await floor(store.pool, "late") == 3 and not await track(store, "late", 2)
    p = (await store.append("s", [requested("y")])).last_position
    assert await track(store, "late", p)
    assert await prune(store.pool, "late", ["ServiceRequested"]) == (p, 1)


async def test_tracking_and_pruning_concurrently_never_handle_a_position_twice(store: EventStore) -> None:
    positions = [(await store.append("s", [requested(f"x{i}")])).last_position for i in range(40)]

    async def race(consumer: str) -> list[int]:
        # A consumer with no floor row yet: its first tracks and first prune race to create it.
        handled: list[int] = []

        async def deliver(p: int) -> None:
            for _ in range(3):  # each message delivered three times
                if await track(store, consumer, p):
                    handled.append(p)
                await asyncio.sleep(0)

        async def pruner() -> None:
            for _ in range(20):
                await prune(store.pool, consumer, ["ServiceRequested"])
                await asyncio.sleep(0)

        await asyncio.gather(pruner(), pruner(), *(deliver(p) for p in positions))
        return sorted(handled)

    for round_ in range(4):
        assert await race(f"race-{round_}") == positions, f"round {round_}"


async def test_a_redelivery_racing_the_first_prune_is_not_handled_again(store: EventStore) -> None:
    """The interleaving behind a double handle seen in CI: a consumer with no floor row yet, its
    first prune deleting a handled row while a redelivery of that position is being tracked."""
    p = (await store.append("s", [requested("a")])).last_position
    assert await track(store, "first", p)
    async with store.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute(  # what prune does, step by step, left uncommitted
            "INSERT INTO stratus_tracking_floor (consumer, position) VALUES ('first', 0)"
            " ON CONFLICT DO NOTHING"
        )
        await conn.execute("SELECT position FROM stratus_tracking_floor WHERE consumer = 'first' FOR UPDATE")
        await conn.execute("DELETE FROM stratus_tracking WHERE consumer = 'first' AND position <= $1", p)
        await conn.execute("UPDATE stratus_tracking_floor SET position = $1 WHERE consumer = 'first'", p)
        redelivery = asyncio.create_task(track(store, "first", p))
        for _ in range(500):  # until the redelivery waits on the prune's locks (bounded: 5 s)
            waiting = await store.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND pid <> pg_backend_pid() AND datname = current_database()"
            )
            if waiting or redelivery.done():
                break
            await asyncio.sleep(0.01)
        await tx.commit()
    assert not await asyncio.wait_for(redelivery, 5.0)
    assert await store.handled_positions("first") == []


async def test_a_dead_letter_below_the_floor_is_retried_once(store: EventStore) -> None:
    dead = (await store.append("s", [requested("a")])).last_position
    ok = (await store.append("s", [requested("b")])).last_position
    async with store.transaction() as tx:
        await tx.record_dead_letter("c2", reason="poison", position=dead)
    assert await track(store, "c2", ok)
    assert (await prune(store.pool, "c2", ["ServiceRequested"]))[0] == ok
    assert await track(store, "c2", dead)  # the operator's retry runs the handler
    await prune(store.pool, "c2", ["ServiceRequested"])
    assert not await track(store, "c2", dead)  # and only once
