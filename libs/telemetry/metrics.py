"""The Prometheus metrics of every Stratus process (prometheus-client).

Metric objects are declarations, like loggers: one per name in the process's default registry,
labelled by what varies. Each process serves them on ``/metrics`` (``serve.py``). Names:

service hosts (scheduler, provisioner, prober, autoscaler, router's event side)
    stratus_handled_messages_total{consumer,event_type,outcome}   outcome: ok | error
    stratus_handler_seconds{consumer}                             histogram
    stratus_consumer_lag_messages{consumer}                       JetStream: pending + unacked
    stratus_dead_letters{consumer}                                recorded, not handled by a retry
    stratus_reconciles_total{outcome}                             work-queue reconciles: ok | error
    stratus_reconcile_seconds                                     histogram
    stratus_projection_position{projection}                       last log position folded
router (per service and replica; produced at scrape time by ``router_stats.RouterCollector``)
    stratus_router_requests_total{service,replica,status}         status: the HTTP status code
    stratus_router_request_seconds{service}                       histogram, head to last byte
    stratus_router_in_flight{service,replica}
    stratus_router_held_requests{service}                         waiting for a ready replica
    stratus_router_upstream_errors_total{service,replica}
    stratus_router_retries_total{service}
    (none of these with STRATUS_ROUTER_METRICS=off: ``router_stats.NoStats``)
relay (``relay_metrics.py``: published at scrape time, the rest sampled every 5 s)
    stratus_relay_published_total{relay}                          messages JetStream acked
    stratus_relay_leader{relay}                                   1 while holding the lease
    stratus_relay_offset{relay}                                   last log position acked
    stratus_relay_lag_events{relay}                               log head minus that offset
provisioner (instance-hours and cost: ``usage.UsageCollector``, at scrape time)
    stratus_launches_total{cloud,outcome}                         outcome: launched | <error kind>
    stratus_instance_hours{cloud,capacity}                        capacity: spot | on_demand
    stratus_instance_cost_dollars{cloud,capacity}                 hours x the placement's catalog price
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.registry import REGISTRY, Collector

HANDLED = Counter(
    "stratus_handled_messages", "Bus messages handled by a consumer", ["consumer", "event_type", "outcome"]
)
HANDLER_SECONDS = Histogram("stratus_handler_seconds", "Time in a consumer's handler", ["consumer"])
CONSUMER_LAG = Gauge(
    "stratus_consumer_lag_messages", "Messages of a durable consumer not yet delivered or acked", ["consumer"]
)
DEAD_LETTERS = Gauge(
    "stratus_dead_letters", "Dead letters of a consumer not handled by a retry", ["consumer"]
)
RECONCILES = Counter("stratus_reconciles", "Reconciles run by a work queue", ["outcome"])
RECONCILE_SECONDS = Histogram("stratus_reconcile_seconds", "Time of one reconcile")
PROJECTION_POSITION = Gauge(
    "stratus_projection_position", "Last log position folded by a projection", ["projection"]
)

LAUNCHES = Counter("stratus_launches", "Replica launches by cloud and outcome", ["cloud", "outcome"])


_registered: set[Collector] = set()
_registering = threading.Lock()


def register_once(collector: Collector) -> None:
    """Add a scrape-time collector (``router_stats``, ``relay_metrics``) to the default registry
    the first time it is asked for; later calls do nothing."""
    with _registering:
        if collector not in _registered:
            REGISTRY.register(collector)
            _registered.add(collector)
