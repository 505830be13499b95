"""One trace for one `up` (in-memory exporter): the API request span, the scheduler handling
ServiceRequested (real service hosts on a real relay, NATS and Postgres), its reconcile and the
events it appended; then the whole way: provisioner (its provider call), prober, router."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import nats.errors
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs.events.bus import connect
from libs.events.envelope import RecordedEvent
from libs.events.relay import Relay, RelayOptions
from libs.events.types import ReplicaScheduled
from libs.runtime.host import ServiceHost, bus_config
from libs.runtime.settings import Settings
from libs.telemetry.tracing import TracingConfig, setup_tracing, tracing_config
from services.scheduler.main import build as build_scheduler
from tests.api.conftest import SERVICE_YAML, Api
from tests.events.helpers import eventually

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # the global provider can be set once
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    yield _EXPORTER
    # The provider stays for the rest of the session (it can be set once): keep no more spans.
    _EXPORTER.clear()
    _EXPORTER.shutdown()


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[int]:
    out: list[int] = []
    parent = _parent(span)
    while parent is not None and parent not in out:
        out.append(parent)
        parent = _parent(by_id[parent]) if parent in by_id else None
    return out


@pytest.mark.timeout(120)
async def test_one_up_is_one_connected_trace(api: Api, spans: InMemorySpanExporter) -> None:
    spans.clear()
    settings = api.settings
    host = ServiceHost("scheduler", settings)
    on_started = build_scheduler(host)
    relay_nc = await connect(settings.nats_url, name="relay")
    relay = Relay(api.store, relay_nc, bus_config(settings), RelayOptions(name="trace", poll_interval=0.2))
    stop = asyncio.Event()
    started = asyncio.Event()

    async def started_then() -> None:
        await on_started()
        started.set()

    tasks = [asyncio.create_task(host.run(started_then)), asyncio.create_task(relay.run(stop))]
    try:
        await asyncio.wait_for(started.wait(), 30)
        r = await api.http.post("/v1/services", json={"name": "traced", "yaml": SERVICE_YAML})
        assert r.status_code == 201, r.text

        async def scheduled() -> bool:
            recs = await api.store.read_all(types=["ReplicaScheduled"])
            return len([x for x in recs if x.event.service == "traced"]) == 2

        await eventually(scheduled, within=30)
    finally:
        host.stop.set()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        with contextlib.suppress(nats.errors.Error):
            await relay_nc.jetstream().delete_stream(bus_config(settings).stream)
        await relay_nc.close()

    done = spans.get_finished_spans()
    (request,) = [s for s in done if s.name == "POST /v1/services"]
    trace_id = request.context.trace_id
    handled = [s for s in done if s.name == "handle ServiceRequested" and s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in done if s.context.trace_id == trace_id}
    # (FastAPI's own spans, e.g. fastapi.endpoint, may sit between the request and the append.)
    assert len(handled) == 1 and request.context.span_id in _ancestors(handled[0], by_id)
    reconciles = [s for s in done if s.name == "reconcile" and _parent(s) == handled[0].context.span_id]
    assert reconciles and all(s.attributes["stratus.service"] == "traced" for s in reconciles)
    # The events the reconcile appended carry the context of their append, a child of the
    # reconcile: the next process continues the trace from there.
    recs = [x for x in await api.store.read_all(types=["ReplicaScheduled"]) if x.event.service == "traced"]
    assert all(isinstance(x.event, ReplicaScheduled) for x in recs)
    span_ids = {s.context.span_id for s in reconciles}
    for rec in recs:
        _version, tid, sid, _flags = rec.trace["traceparent"].split("-")
        assert int(tid, 16) == trace_id
        append = by_id[int(sid, 16)]
        assert append.name == "append" and _parent(append) in span_ids
        assert append.attributes["stratus.stream"].startswith("replica-traced-")
    # The scheduler's handling is the child of the API's append; the relay's publish of the
    # event is a span of its own beside it (the message carries the append's context).
    append = by_id[_parent(handled[0])]
    assert append.name == "append" and append.attributes["stratus.stream"] == "service-traced"
    (published,) = [s for s in by_id.values() if s.name == "publish ServiceRequested"]
    assert _parent(published) == append.context.span_id and published.kind == trace.SpanKind.PRODUCER
    assert published.attributes["stratus.position"] == requested_position(await api.store.read_all())
    requested = await api.store.read_all(types=["ServiceRequested"])
    assert int(requested[0].trace["traceparent"].split("-")[1], 16) == trace_id


def requested_position(recs: list[RecordedEvent]) -> int:
    return next(
        x.position for x in recs if x.event_type == "ServiceRequested" and x.event.service == "traced"
    )


def _config(**env: str) -> TracingConfig:
    return tracing_config("api", Settings.from_env(env))


def test_tracing_is_off_unless_the_standard_variables_ask_for_it(caplog: pytest.LogCaptureFixture) -> None:
    assert _config() == TracingConfig() and setup_tracing("api", Settings.from_env({})) is None
    on = _config(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318/")
    assert on == TracingConfig(("otlp",), "http://127.0.0.1:4318/v1/traces", "stratus-api")
    exact = _config(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://c:1/t", OTEL_SERVICE_NAME="s")
    assert (exact.exporters, exact.otlp_endpoint, exact.service_name) == (("otlp",), "http://c:1/t", "s")
    both = _config(OTEL_EXPORTER_OTLP_ENDPOINT="http://c:1", OTEL_TRACES_EXPORTER="console, otlp,zipkin")
    assert both.exporters == ("otlp", "console") and "'zipkin'" in caplog.text
    # Named without an endpoint: the spec's default collector address.
    assert _config(OTEL_TRACES_EXPORTER="otlp").otlp_endpoint == "http://localhost:4318/v1/traces"
    assert _config(OTEL_TRACES_EXPORTER="console").exporters == ("console",)
    for off in ({"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_SDK_DISABLED": "TRUE"}):
        assert _config(OTEL_EXPORTER_OTLP_ENDPOINT="http://c:1", **off).exporters == ()


ONE_REPLICA = SERVICE_YAML.replace("replicas: 2", "replicas: 1").replace("cpus: 2", "cpus: 1")


@pytest.mark.timeout(240)
async def test_one_up_is_one_trace_across_api_scheduler_provisioner_prober_and_router(
    api: Api, spans: InMemorySpanExporter
) -> None:
    import dataclasses

    from services.prober.main import build as build_prober
    from services.provisioner.main import build as build_provisioner
    from services.router.main import build as build_router

    spans.clear()
    settings = dataclasses.replace(
        api.settings, probe_interval=0.3, monitor_interval=0.5, router_id=f"router-{api.settings.bus_prefix}"
    )
    hosts = {name: ServiceHost(name, settings) for name in ("scheduler", "provisioner", "prober", "router")}
    builders = {"scheduler": build_scheduler, "provisioner": build_provisioner, "prober": build_prober,
                "router": build_router}  # fmt: skip
    relay_nc = await connect(settings.nats_url, name="relay")
    relay = Relay(
        api.store, relay_nc, bus_config(settings), RelayOptions(name="trace-all", poll_interval=0.2)
    )
    stop = asyncio.Event()
    started = {name: asyncio.Event() for name in hosts}
    tasks = [asyncio.create_task(relay.run(stop))]
    for name, host in hosts.items():
        hook = builders[name](host)

        async def on_started(hook=hook, ev=started[name]) -> None:  # type: ignore[no-untyped-def]
            if hook is not None:
                await hook()
            ev.set()

        tasks.append(asyncio.create_task(host.run(on_started)))
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started.values())), 60)
        r = await api.http.post("/v1/services", json={"name": "traced-all", "yaml": ONE_REPLICA})
        assert r.status_code == 201, r.text

        async def routed() -> bool:
            return any(
                s.name == "handle ReplicaReady" and s.attributes.get("messaging.consumer.group.name", "")
                .startswith("router") for s in spans.get_finished_spans()
            )  # fmt: skip

        await eventually(routed, within=120, every=0.2)
        down = await api.http.delete("/v1/services/traced-all")
        assert down.status_code == 202, down.text

        async def terminated() -> bool:
            recs = await api.store.read_all(types=["ReplicaTerminated"])
            return any(x.event.service == "traced-all" for x in recs)

        await eventually(terminated, within=60, every=0.2)
    finally:
        for host in hosts.values():
            host.stop.set()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        with contextlib.suppress(nats.errors.Error):
            await relay_nc.jetstream().delete_stream(bus_config(settings).stream)
        await relay_nc.close()

    done = spans.get_finished_spans()
    (request,) = [s for s in done if s.name == "POST /v1/services"]
    trace_id = request.context.trace_id
    in_trace = {s.context.span_id: s for s in done if s.context.trace_id == trace_id}
    names = {s.name for s in in_trace.values()}
    # api -> scheduler -> provisioner (its provider call) -> prober -> router, one trace.
    assert {"handle ServiceRequested", "handle ReplicaScheduled", "provider.launch", "probe",
            "handle ReplicaReady"} <= names, sorted(names)  # fmt: skip
    routed_span = next(
        s for s in in_trace.values()
        if s.name == "handle ReplicaReady" and str(s.attributes.get("messaging.consumer.group.name"))
        .startswith("router")
    )  # fmt: skip
    chain = [in_trace[p].name for p in _ancestors(routed_span, in_trace) if p in in_trace]
    assert "probe" in chain and "provider.launch" not in chain  # the launch's reconcile, not the call
    assert request.context.span_id in _ancestors(routed_span, in_trace)
    # Each hop between processes goes through the append that recorded the event, with the
    # relay's publish of it beside the consumer: the router handled the ReplicaReady the probe
    # appended.
    assert chain[:2] == ["append", "probe"], chain
    assert {"publish ServiceRequested", "publish ReplicaScheduled", "publish ReplicaLaunched"} <= names
    hops = [routed_span, *(in_trace[p] for p in _ancestors(routed_span, in_trace) if p in in_trace)]
    for i, span in enumerate(hops[:-1]):
        if span.name.startswith("handle "):  # a consumer: child of an append the relay published
            append = hops[i + 1]
            assert append.name == "append", chain
            publishes = [s for s in in_trace.values() if _parent(s) == append.context.span_id]
            assert f"publish {span.name.removeprefix('handle ')}" in {s.name for s in publishes}, chain
