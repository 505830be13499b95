"""The router's request metrics: plain counters on each endpoint, read at scrape time.

The request path only bumps ints in dicts (``EndpointStats``); nothing there touches
prometheus-client, whose per-call label lookups and locks would cost the data path a measurable
share of its throughput. ``RouterCollector`` turns the counters into the ``stratus_router_*``
families of ``metrics.py`` when ``/metrics`` is scraped (on the metrics server's thread: the
counters are read, never written, there; a scrape may be one request behind).

``NoStats`` is what an endpoint counts with when the router's metrics are off
(``STRATUS_ROUTER_METRICS=off``): the same calls, doing nothing.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .metrics import register_once

# Upper bounds (seconds) of the latency histogram's buckets; one more bucket for +Inf.
BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
NO_REPLICA = 0  # requests answered by the router itself (503 no ready replica, 400, ...)


class EndpointStats:
    __slots__ = ("buckets", "requests", "retries", "seconds", "upstream_errors")

    def __init__(self) -> None:
        self.requests: dict[tuple[int, int], int] = {}  # (replica id, status) -> count
        self.upstream_errors: dict[int, int] = {}  # replica id -> count
        self.retries = 0
        self.buckets = [0] * (len(BOUNDS) + 1)
        self.seconds = 0.0

    def finished(self, replica: _Replica | None, status: int, seconds: float) -> None:
        key = (replica.replica_id if replica is not None else NO_REPLICA, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        self.buckets[bisect_left(BOUNDS, seconds)] += 1
        self.seconds += seconds

    def upstream_error(self, replica: _Replica | None) -> None:
        rid = replica.replica_id if replica is not None else NO_REPLICA
        errors = self.upstream_errors
        errors[rid] = errors.get(rid, 0) + 1


class NoStats(EndpointStats):
    """Counts nothing: the request path's calls stay, their bodies go (metrics off)."""

    __slots__ = ()

    def finished(self, replica: _Replica | None, status: int, seconds: float) -> None:
        return None

    def upstream_error(self, replica: _Replica | None) -> None:
        return None


def endpoint_stats(enabled: bool) -> EndpointStats:
    return EndpointStats() if enabled else NoStats()


class _Replica(Protocol):
    @property
    def replica_id(self) -> int: ...

    @property
    def in_flight(self) -> int: ...


class _Pool(Protocol):
    def replicas(self) -> Sequence[_Replica]: ...


class _Endpoint(Protocol):
    stats: EndpointStats

    @property
    def pool(self) -> _Pool: ...

    def held_count(self) -> int: ...


class _Router(Protocol):
    def services(self) -> list[str]: ...

    def endpoint(self, name: str) -> _Endpoint: ...


def _replica_label(replica: int) -> str:
    return str(replica) if replica != NO_REPLICA else "none"


class RouterCollector(Collector):
    def __init__(self, router: _Router) -> None:
        self.router = router

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "stratus_router_requests",
            "Requests answered by the router",
            labels=["service", "replica", "status"],
        )
        latency = HistogramMetricFamily(
            "stratus_router_request_seconds", "Router request latency, head to last byte", labels=["service"]
        )
        in_flight = GaugeMetricFamily(
            "stratus_router_in_flight", "Requests in flight", labels=["service", "replica"]
        )
        held = GaugeMetricFamily(
            "stratus_router_held_requests", "Requests held for a ready replica", labels=["service"]
        )
        errors = CounterMetricFamily(
            "stratus_router_upstream_errors", "Failed exchanges with a replica", labels=["service", "replica"]
        )
        retries = CounterMetricFamily(
            "stratus_router_retries", "Requests retried on another replica", labels=["service"]
        )
        for name in list(self.router.services()):
            try:
                ep = self.router.endpoint(name)
            except KeyError:
                continue  # removed while we read
            stats = ep.stats
            for (replica, status), n in list(stats.requests.items()):
                requests.add_metric([name, _replica_label(replica), str(status)], n)
            cumulative, acc = [], 0
            for bound, n in zip((*map(str, BOUNDS), "+Inf"), list(stats.buckets), strict=True):
                acc += n
                cumulative.append((bound, acc))
            latency.add_metric([name], cumulative, stats.seconds)
            for r in ep.pool.replicas():
                in_flight.add_metric([name, str(r.replica_id)], r.in_flight)
            held.add_metric([name], ep.held_count())
            for replica, n in list(stats.upstream_errors.items()):
                errors.add_metric([name, _replica_label(replica)], n)
            retries.add_metric([name], stats.retries)
        yield from (requests, latency, in_flight, held, errors, retries)


class _Routers(Collector):
    """The process's routers (normally one), as one collector in the default registry."""

    def __init__(self) -> None:
        self.routers: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        families: dict[str, Any] = {}
        for router in list(self.routers):
            for family in RouterCollector(router).collect():
                merged = families.setdefault(family.name, family)
                if merged is not family:
                    merged.samples.extend(family.samples)
        yield from families.values()


_ROUTERS = _Routers()


def watch_router(router: _Router) -> None:
    """Report ``router``'s endpoints on this process's /metrics (for as long as it lives)."""
    register_once(_ROUTERS)
    _ROUTERS.routers.add(router)
