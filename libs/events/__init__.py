"""Stratus events: the Postgres event log, its JetStream relay, consumers and projections.

Write: ``EventStore.append`` / ``store.transaction()``. Publish: ``Relay`` (one active per name,
``python -m libs.events relay``). React: ``Consumer``. Read models: ``Projection``,
``LiveProjection`` (rows this code cannot decode are skipped and counted, not fatal). Errors:
``libs.events.errors`` (one tree).

Wiring a service (its ``main.py``)::

    stop = asyncio.Event()
    install_stop_signals(stop)                      # SIGTERM/SIGINT -> stop
    store = await EventStore.connect(database_url)
    nc = await connect(nats_url, name="scheduler")
    consumer = Consumer(nc, name="scheduler", handler=handle, store=store,
                        options=ConsumerOptions(filter_subjects=("stratus.ev.*.ScaleDecided",)))
    try:
        await consumer.run(stop)                     # returns after in-flight messages are acked
    finally:
        await nc.close()
        await store.close()

where ``async def handle(rec: RecordedEvent, tx: Transaction) -> None`` appends its events
through ``tx``: they commit with the consumer's tracking row, or not at all.
"""

from .bus import BusConfig, OutboxMessage, connect, connect_until_stopped, decode_message, ensure_stream
from .consumer import Consumer, ConsumerOptions, ConsumerStats, Handler, MemoryHandler
from .envelope import NewEvent, RecordedEvent
from .errors import (
    BusUnavailable,
    ConcurrencyConflict,
    EventDecodeError,
    EventsError,
    PermanentError,
    ProjectionBehind,
    StoreUnavailable,
    TransientError,
    UnknownEventType,
)
from .lifecycle import install_stop_signals, retry_connect
from .projection import LiveProjection, Projection, Snapshot
from .relay import Relay, RelayOptions
from .store import AppendResult, EventStore, Page, StreamAppend, Transaction, Undecodable

__all__ = [
    "AppendResult",
    "BusConfig",
    "BusUnavailable",
    "ConcurrencyConflict",
    "Consumer",
    "ConsumerOptions",
    "ConsumerStats",
    "EventDecodeError",
    "EventStore",
    "EventsError",
    "Handler",
    "LiveProjection",
    "MemoryHandler",
    "NewEvent",
    "OutboxMessage",
    "Page",
    "PermanentError",
    "Projection",
    "ProjectionBehind",
    "RecordedEvent",
    "Relay",
    "RelayOptions",
    "Snapshot",
    "StoreUnavailable",
    "StreamAppend",
    "Transaction",
    "TransientError",
    "Undecodable",
    "UnknownEventType",
    "connect",
    "connect_until_stopped",
    "decode_message",
    "ensure_stream",
    "install_stop_signals",
    "retry_connect",
]
