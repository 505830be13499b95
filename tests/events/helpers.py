"""Small test helpers: bounded waiting and event factories."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from libs.events.bus import H_MSG_ID, BusConfig, OutboxMessage
from libs.events.envelope import RecordedEvent
from libs.events.store import EventStore
from libs.events.types import QpsSampled, ServiceRequested


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float = 10.0, every: float = 0.05
) -> None:
    """Wait until ``check()`` is true; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(every)
    assert await check(), f"condition not met within {within}s"


def requested(service: str, n: int = 0) -> ServiceRequested:
    return ServiceRequested(service=service, version=n + 1)


def sampled(service: str, requests: int) -> QpsSampled:
    return QpsSampled(
        service=service, router_id="r1", window_start=0.0, window_seconds=10.0, requests=requests
    )


async def stream_messages(js: JetStreamContext, stream: str) -> list[RawStreamMsg]:
    """Every message of a JetStream stream, in stream order (bounded by its message count)."""
    info = await js.stream_info(stream)
    first, last = info.state.first_seq, info.state.last_seq
    out: list[RawStreamMsg] = []
    for seq in range(first, last + 1) if info.state.messages else ():
        out.append(await js.get_msg(stream, seq))
    return out


async def publish_recorded(
    js: JetStreamContext, bus: BusConfig, rec: RecordedEvent, *, msg_id: str | None = None
) -> None:
    """Publish a stored event as the relay would (``msg_id`` overrides the de-duplication id)."""
    out = OutboxMessage.from_recorded(rec)
    headers = out.headers()
    if msg_id is not None:
        headers[H_MSG_ID] = msg_id
    await js.publish(out.subject(bus), out.payload, headers=headers, stream=bus.stream)


async def publish_all(
    js: JetStreamContext, bus: BusConfig, store: EventStore, *, after: int = 0
) -> list[RecordedEvent]:
    records = await store.read_all(after=after)
    for rec in records:
        await publish_recorded(js, bus, rec)
    return records


async def append_raw(
    store: EventStore, stream_id: str, event_type: str, payload: str, schema_version: int = 1
) -> int:
    """Append a row as another writer might have (an unknown tag, a payload this code cannot
    read) through the same SQL function as every append; returns its position."""
    position = await store.pool.fetchval(
        "SELECT out_position FROM stratus_append(ARRAY[$1], ARRAY[NULL]::int[], ARRAY[$2::uuid],"
        " ARRAY[$3], ARRAY[$4::int], ARRAY[$5::jsonb], ARRAY[NULL]::uuid[], ARRAY[NULL]::uuid[],"
        " ARRAY['{}'::jsonb], now())",
        stream_id, uuid.uuid4(), event_type, schema_version, payload,
    )  # fmt: skip
    return int(position)
