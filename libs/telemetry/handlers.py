"""Wrappers the service host puts around every consumer's handler.

Each handled message runs with its event as the current cause (``libs.events.causation``), so
whatever the handler appends records it as causation and inherits its correlation id; it is
counted and timed (``metrics.py``) and traced as a span linked to the trace the event carries
(``tracing.py``).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager

from opentelemetry.trace import Span, SpanKind

from libs.events.causation import caused_by
from libs.events.consumer import Handler, MemoryHandler
from libs.events.envelope import RecordedEvent
from libs.events.store import Transaction

from .metrics import HANDLED, HANDLER_SECONDS
from .tracing import extract, tracer


def _span(consumer: str, rec: RecordedEvent) -> AbstractContextManager[Span]:
    """A consumer span, child of the span that appended the event (its trace context)."""
    return tracer().start_as_current_span(
        f"handle {rec.event_type}", context=extract(rec.trace), kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "nats", "messaging.consumer.group.name": consumer,
            "stratus.event_type": rec.event_type, "stratus.position": rec.position,
            "stratus.service": rec.event.service,
        },
    )  # fmt: skip


def instrument_handler(service: str, consumer: str, handler: Handler) -> Handler:
    seconds = HANDLER_SECONDS.labels(consumer)

    async def handle(rec: RecordedEvent, tx: Transaction) -> None:
        started = time.perf_counter()
        outcome = "error"
        try:
            with _span(consumer, rec), caused_by(rec):
                await handler(rec, tx)
            outcome = "ok"
        finally:
            seconds.observe(time.perf_counter() - started)
            HANDLED.labels(consumer, rec.event_type, outcome).inc()

    return handle


def instrument_memory_handler(service: str, consumer: str, handler: MemoryHandler) -> MemoryHandler:
    seconds = HANDLER_SECONDS.labels(consumer)

    async def handle(rec: RecordedEvent) -> None:
        started = time.perf_counter()
        outcome = "error"
        try:
            with _span(consumer, rec), caused_by(rec):
                await handler(rec)
            outcome = "ok"
        finally:
            seconds.observe(time.perf_counter() - started)
            HANDLED.labels(consumer, rec.event_type, outcome).inc()

    return handle
