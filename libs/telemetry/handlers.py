"""Wrappers the service host puts around every consumer's handler.

Each handled message runs with its event as the current cause (``libs.events.causation``), so
whatever the handler appends records it as causation and inherits its correlation id.
"""

from __future__ import annotations

from libs.events.causation import caused_by
from libs.events.consumer import Handler, MemoryHandler
from libs.events.envelope import RecordedEvent
from libs.events.store import Transaction


def instrument_handler(service: str, consumer: str, handler: Handler) -> Handler:
    async def handle(rec: RecordedEvent, tx: Transaction) -> None:
        with caused_by(rec):
            await handler(rec, tx)

    return handle


def instrument_memory_handler(service: str, consumer: str, handler: MemoryHandler) -> MemoryHandler:
    async def handle(rec: RecordedEvent) -> None:
        with caused_by(rec):
            await handler(rec)

    return handle
