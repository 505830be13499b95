"""The outbox relay's metrics, on the relay process's /metrics (``python -m libs.events relay``).

    stratus_relay_published_total{relay}   messages JetStream acked (duplicates included)
    stratus_relay_leader{relay}            1 while this process holds the relay's lease
    stratus_relay_offset{relay}            last log position the relay has seen acked
    stratus_relay_lag_events{relay}        log head minus that offset: appended, not yet on the bus

The published count is read from the relay at scrape time; leadership, offset and head are
sampled on the event loop every few seconds by ``sample_relay`` (the scrape runs on the metrics
server's thread, which can neither wait on the loop's connections nor read the loop's clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Iterator
from typing import Protocol

import asyncpg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

log = logging.getLogger(__name__)


class _Store(Protocol):
    async def last_position(self) -> int: ...


class _Options(Protocol):
    @property
    def name(self) -> str: ...


class _Relay(Protocol):
    published: int

    @property
    def is_leader(self) -> bool: ...

    @property
    def options(self) -> _Options: ...

    @property
    def store(self) -> _Store: ...

    async def offset(self) -> int: ...


class _Sampled:
    __slots__ = ("head", "leader", "offset")

    def __init__(self) -> None:
        self.offset = 0
        self.head = 0
        self.leader = False


class _Relays(Collector):
    def __init__(self) -> None:
        self.relays: weakref.WeakKeyDictionary[_Relay, _Sampled] = weakref.WeakKeyDictionary()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        published = CounterMetricFamily(
            "stratus_relay_published", "Messages JetStream acked to the relay", labels=["relay"]
        )
        leader = GaugeMetricFamily("stratus_relay_leader", "1 while holding the lease", labels=["relay"])
        offset = GaugeMetricFamily("stratus_relay_offset", "Last log position acked", labels=["relay"])
        lag = GaugeMetricFamily(
            "stratus_relay_lag_events", "Log head minus the relay's offset", labels=["relay"]
        )
        for relay, sampled in list(self.relays.items()):
            name = relay.options.name
            published.add_metric([name], relay.published)
            leader.add_metric([name], 1.0 if sampled.leader else 0.0)
            offset.add_metric([name], sampled.offset)
            lag.add_metric([name], max(0, sampled.head - sampled.offset))
        yield from (published, leader, offset, lag)


_RELAYS = _Relays()
_registered = False


def watch_relay(relay: _Relay) -> None:
    """Report ``relay`` on this process's /metrics (for as long as it lives)."""
    global _registered
    if not _registered:
        REGISTRY.register(_RELAYS)
        _registered = True
    _RELAYS.relays.setdefault(relay, _Sampled())


async def sample_relay(relay: _Relay, stop: asyncio.Event, every: float = 5.0) -> None:
    """Sample the offset and the log head until ``stop`` (a failed sample waits for the next)."""
    watch_relay(relay)
    sampled = _RELAYS.relays[relay]
    while not stop.is_set():
        sampled.leader = relay.is_leader
        try:
            sampled.offset = await relay.offset()
            sampled.head = await relay.store.last_position()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.debug("relay %s: metrics sample failed: %r", relay.options.name, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
