"""OTLP export from the real processes: the whole stack (supervisor, API, relay, five services)
with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a fake collector on loopback, which decodes
the protobuf ``ExportTraceServiceRequest`` bodies. One ``up`` is one trace across the processes,
from the API's request to the router handling the new replica's ReplicaReady."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Stack, running_stack
from tests.ops.one_service import up_one
from tests.ops.otlp_collector import CollectedSpan, Collector, otlp_collector

COMPONENTS = {"api", "relay", "scheduler", "provisioner", "prober", "router"}


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with otlp_collector() as c:
        yield c


@pytest.fixture(scope="module")
def traced_stack(
    tmp_path_factory: pytest.TempPathFactory, nats_url: str, stack_db: str, collector: Collector
) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stratus-traced")
    # The standard variables: every process exports to the collector, in batches of 0.2 s.
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with running_stack(home, nats_url, stack_db, otel, inherit=env) as s:
        yield s


def _ancestors(span: CollectedSpan, by_id: dict[str, CollectedSpan]) -> list[CollectedSpan]:
    out: list[CollectedSpan] = []
    while span.parent_span_id in by_id and len(out) < 100:
        span = by_id[span.parent_span_id]
        out.append(span)
    return out


@pytest.mark.timeout(240)
def test_every_process_exports_its_spans_with_otlp_and_one_up_is_one_trace(
    traced_stack: Stack, collector: Collector
) -> None:
    up_one(traced_stack, "otlp")

    def routed(spans: list[CollectedSpan]) -> bool:
        # Each process exports on its own schedule: the router's span of handling ReplicaReady
        # can arrive before the prober's that caused it, so wait for every component's too.
        requests = [s for s in spans if s.name == "POST /v1/services" and s.component == "api"]
        if not requests:
            return False
        in_trace = [s for s in spans if s.trace_id == requests[0].trace_id]
        return {s.component for s in in_trace} >= COMPONENTS and any(
            s.name == "handle ReplicaReady" and s.component == "router" for s in in_trace
        )

    spans = collector.wait_for(routed, within=60)
    (request,) = [s for s in spans if s.name == "POST /v1/services" and s.component == "api"]
    in_trace = {s.span_id: s for s in spans if s.trace_id == request.trace_id}
    assert {s.component for s in in_trace.values()} >= COMPONENTS, sorted(
        {(s.component, s.name) for s in in_trace.values()}
    )
    for s in in_trace.values():
        assert s.resource["service.name"] == f"stratus-{s.component}"
        assert s.resource["service.instance.id"].startswith(f"{s.component}-")

    # The router's handling of ReplicaReady goes back, parent by parent and across the processes,
    # to the API request: through the appends, the prober, provisioner and scheduler; the relay
    # published each event in a span beside its consumer's.
    routed_span = next(
        s for s in in_trace.values() if s.name == "handle ReplicaReady" and s.component == "router"
    )
    chain = _ancestors(routed_span, in_trace)
    assert request in chain, [(s.component, s.name) for s in chain]
    hops = [(s.component, s.name) for s in [routed_span, *chain[: chain.index(request) + 1]]]
    assert hops[:3] == [("router", "handle ReplicaReady"), ("prober", "append"), ("prober", "probe")], hops
    beside = [s for s in in_trace.values() if s.parent_span_id == chain[0].span_id and s.component == "relay"]
    assert [s.name for s in beside] == ["publish ReplicaReady"], beside
    assert ("provisioner", "provider.launch") not in hops  # the launch's reconcile, not its call
    upstream = [("provisioner", "handle ReplicaScheduled"), ("scheduler", "handle ServiceRequested"),
                ("api", "append")]  # fmt: skip
    assert all(hop in hops for hop in upstream), hops
    relayed = {s.name for s in in_trace.values() if s.component == "relay"}
    assert {"publish ServiceRequested", "publish ReplicaScheduled", "publish ReplicaLaunched"} <= relayed
    assert ("provisioner", "provider.launch") in {(s.component, s.name) for s in in_trace.values()}
    assert traced_stack.api("DELETE", "/v1/services/otlp").status_code == 202
