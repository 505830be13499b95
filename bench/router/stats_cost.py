"""What the router's request metrics cost per request, and what a scrape costs, in isolation.

    python -m bench.router.stats_cost [--calls 200000] [--replicas 4]

Times the call the data path makes once per request (``EndpointStats.finished``: a dict
increment, a histogram bucket, a float add) against the one it makes with
``STRATUS_ROUTER_METRICS=off`` (``NoStats.finished``, an empty method), best of 5 repeats (the
least disturbed by other load), and one scrape of ``/metrics``'s router families
(``RouterCollector.collect`` + text exposition) for one service. Compare the difference with
the router's CPU time per request (~25-40 µs on loopback: ``peer_metrics.sh``, bench/router/README.md).
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest

from libs.telemetry.router_stats import EndpointStats, NoStats, RouterCollector


@dataclass
class _Replica:
    replica_id: int
    in_flight: int = 0


@dataclass
class _Pool:
    items: list[_Replica]

    def replicas(self) -> list[_Replica]:
        return self.items


@dataclass
class _Endpoint:
    pool: _Pool
    stats: EndpointStats = field(default_factory=EndpointStats)

    def held_count(self) -> int:
        return 0


@dataclass
class _Router:
    ep: _Endpoint

    def services(self) -> list[str]:
        return ["bench"]

    def endpoint(self, name: str) -> _Endpoint:
        return self.ep


def per_call_ns(stats: EndpointStats, replicas: Sequence[_Replica], calls: int) -> float:
    n = len(replicas)
    i = 0

    def one() -> None:
        nonlocal i
        i += 1
        stats.finished(replicas[i % n], 200, 0.0004)

    return min(timeit.repeat(one, number=calls, repeat=5)) / calls * 1e9


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.router.stats_cost", description=__doc__)
    p.add_argument("--calls", type=int, default=200_000)
    p.add_argument("--replicas", type=int, default=4)
    args = p.parse_args(argv)
    replicas = [_Replica(i + 1) for i in range(args.replicas)]
    on = per_call_ns(EndpointStats(), replicas, args.calls)
    off = per_call_ns(NoStats(), replicas, args.calls)
    endpoint = _Endpoint(_Pool(replicas))
    for r in replicas:
        endpoint.stats.finished(r, 200, 0.001)
        endpoint.stats.finished(r, 503, 0.01)
    registry = CollectorRegistry()
    registry.register(RouterCollector(_Router(endpoint)))
    scrape = min(timeit.repeat(lambda: generate_latest(registry), number=200, repeat=5)) / 200 * 1e6
    print(f"per request, metrics on:  {on:7.0f} ns  (EndpointStats.finished)")
    print(f"per request, metrics off: {off:7.0f} ns  (NoStats.finished)")
    print(f"difference:               {on - off:7.0f} ns per request")
    print(f"one scrape of the router families ({args.replicas} replicas, 2 statuses): {scrape:.0f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
