"""Process-level telemetry of a service host: the /metrics and /healthz server, the projection
position, and per-consumer gauges sampled from JetStream and the dead-letter table."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import nats.errors
from nats.js import JetStreamContext

from libs.events.redelivery import open_dead_letters
from libs.events.store import EventStore

from .health import Connection, HealthEndpoint, Sampled, host_probe
from .metrics import CONSUMER_LAG, DEAD_LETTERS, PROJECTION_POSITION
from .serve import serve_metrics

log = logging.getLogger(__name__)


class Positioned(Protocol):
    @property
    def position(self) -> int: ...


def start_process_metrics(
    component: str, home: Path, fleet: Positioned, *, bus: Callable[[], Connection | None] | None = None,
    consumers: Iterable[Sampled] = (), stopping: Callable[[], bool] = lambda: False,
) -> Callable[[], None]:  # fmt: skip
    """Serve /metrics and /healthz (``health.host_probe`` of ``fleet`` and the rest, run on the
    calling event loop) and report the fleet projection's position; returns the stop function."""
    PROJECTION_POSITION.labels("fleet").set_function(lambda: fleet.position)
    health = HealthEndpoint(component)
    health.attach(host_probe(component, fleet, bus=bus, consumers=consumers, stopping=stopping))
    url, stop = serve_metrics(component, home, health)
    log.info("%s: metrics at %s (and /healthz)", component, url)
    return stop


class ConsumerGauges:
    """Samples a durable consumer's lag and open dead letters (``sample`` from a host loop)."""

    def __init__(
        self, js: Callable[[], JetStreamContext], store: Callable[[], EventStore], stream: str, consumer: str
    ) -> None:
        self._js = js
        self._store = store
        self.stream = stream
        self.consumer = consumer
        self.lag: int | None = None  # last sampled (None: not known yet); /healthz shows it

    async def sample(self) -> None:
        try:
            info = await self._js().consumer_info(self.stream, self.consumer)
        except nats.errors.Error as exc:  # not created yet, or the bus is away: try next time
            log.debug("consumer %s: no info: %r", self.consumer, exc)
            self.lag = None
        else:
            self.lag = (info.num_pending or 0) + (info.num_ack_pending or 0)
            CONSUMER_LAG.labels(self.consumer).set(self.lag)
        DEAD_LETTERS.labels(self.consumer).set(await open_dead_letters(self._store().pool, self.consumer))
