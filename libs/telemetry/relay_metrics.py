"""The outbox relay's metrics, on the relay process's /metrics (``python -m libs.events relay``).

    stratus_relay_published_total{relay}   messages JetStream acked (duplicates included)
    stratus_relay_leader{relay}            1 while this process holds the relay's lease
    stratus_relay_offset{relay}            last log position the relay has seen acked
    stratus_relay_lag_events{relay}        log head minus that offset: appended, not yet on the bus

The published count is read from the relay at scrape time; leadership, offset and head are
sampled on the event loop every few seconds by ``sample_relay`` (the scrape runs on the metrics
server's thread, which can neither wait on the loop's connections nor read the loop's clock).
The same server's ``/healthz`` runs ``relay_probe`` on the loop (``health.py``): leader or
standby, offset, head and lag, and whether Postgres and NATS are there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import asyncpg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from libs.events.outcomes import TRANSIENT_ERRORS

from .health import QUERY_TIMEOUT, Connection, Probe, Report, bus_state, verdict
from .metrics import register_once

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


def watch_relay(relay: _Relay) -> None:
    """Report ``relay`` on this process's /metrics (for as long as it lives)."""
    register_once(_RELAYS)
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


def relay_probe(relay: _Relay, bus: Callable[[], Connection | None]) -> Probe:
    """The relay's /healthz probe: leader or standby, its offset, the log's head and the lag
    between (queried afresh: the answer is cached by ``HealthEndpoint``, not sampled)."""

    async def probe() -> Report:
        problems: list[str] = []
        role = "leader" if relay.is_leader else "standby"
        info: dict[str, Any] = {"name": relay.options.name, "role": role}
        try:
            offset = await asyncio.wait_for(relay.offset(), QUERY_TIMEOUT)
            head = await asyncio.wait_for(relay.store.last_position(), QUERY_TIMEOUT)
        except (*TRANSIENT_ERRORS, OSError, asyncpg.PostgresError):
            store = "unreachable"
            problems.append("store: unreachable")
            info.update(offset=None, head=None, lag=-1)
        else:
            store = "connected"
            info.update(offset=offset, head=head, lag=max(0, head - offset))
        state = bus_state(bus())
        if state != "connected":
            problems.append(f"bus: {state}")
        return verdict("relay", problems, relay=info, store=store, bus=state)

    return probe
