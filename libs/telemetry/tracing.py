"""Tracing with OpenTelemetry: spans for API requests, appends, relay publishes, handled
messages, reconciles, provider calls and probes, linked across processes by the W3C trace
context every event carries (``RecordedEvent.trace``, the ``traceparent`` header on the bus).

Off unless configured (``tracing_config``): with no tracer provider installed the OpenTelemetry
API hands out non-recording spans, and the hot paths (each append, each relay publish) skip even
those behind ``tracing_on()``, a cached check. ``setup_tracing`` installs a provider exporting
with OTLP over HTTP (protobuf) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, the standard variables, read through
``libs.runtime.settings`` like every other; ``OTEL_TRACES_EXPORTER`` (otlp, console, none;
comma-separated) and ``OTEL_SDK_DISABLED`` are honoured, and ``OTEL_SERVICE_NAME`` names the
processes (default ``stratus-<component>``). The SDK itself reads the rest of its variables
(``OTEL_EXPORTER_OTLP_HEADERS``, ``..._TIMEOUT``, ``..._COMPRESSION``, ``OTEL_TRACES_SAMPLER``,
``OTEL_BSP_*``, ``OTEL_RESOURCE_ATTRIBUTES``). Any other exporter can be plugged in by
installing a ``TracerProvider`` before the process starts its work
(``opentelemetry.trace.set_tracer_provider``; the tests use an in-memory one).
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from libs.runtime.settings import Settings

log = logging.getLogger(__name__)

_PROPAGATOR = TraceContextTextMapPropagator()
# A proxy until a provider is installed, then delegating to it: safe to keep from import time.
_TRACER = trace.get_tracer("stratus")
_on = False


def tracer() -> trace.Tracer:
    return _TRACER


def tracing_on() -> bool:
    """Whether spans are recorded: a provider has been installed (once set, it stays).

    Off, this runs on every append and publish: it reads the API's global (~50 ns) rather than
    calling ``get_tracer_provider()``, which looks up an environment variable each time (~1 µs);
    the call stays the fallback should the global's name change."""
    global _on
    if not _on:
        if hasattr(trace, "_TRACER_PROVIDER"):
            _on = trace._TRACER_PROVIDER is not None
        else:  # pragma: no cover - another opentelemetry-api layout
            _on = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return _on


def extract(carrier: Mapping[str, str]) -> otel_context.Context | None:
    """The context a trace carrier (an event's ``trace``) names, or None."""
    if not carrier or "traceparent" not in carrier:
        return None
    return _PROPAGATOR.extract(dict(carrier))


def current_carrier() -> dict[str, str]:
    """The current span's trace context as W3C headers ({} when no span is recording)."""
    carrier: dict[str, str] = {}
    span = trace.get_current_span()
    if span.get_span_context().is_valid:
        _PROPAGATOR.inject(carrier)
    return carrier


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """What ``setup_tracing`` installs: the exporters (empty: tracing off) and the names."""

    exporters: tuple[str, ...] = ()  # "otlp", "console"
    otlp_endpoint: str = ""  # the traces URL (…/v1/traces)
    service_name: str = ""


def tracing_config(component: str, settings: Settings) -> TracingConfig:
    """The standard OTel variables (``settings.otel_*``) as a decision (pure)."""
    if settings.otel_sdk_disabled.strip().lower() == "true":
        return TracingConfig()
    named = [x.strip().lower() for x in settings.otel_traces_exporter.split(",") if x.strip()]
    endpoint = settings.otel_exporter_otlp_traces_endpoint or (
        settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        if settings.otel_exporter_otlp_endpoint else ""
    )  # fmt: skip
    if "none" in named:
        return TracingConfig()
    for unknown in sorted(set(named) - {"otlp", "console"}):
        log.warning(
            "%s: OTEL_TRACES_EXPORTER names %r, which Stratus does not know: ignored", component, unknown
        )
    exporters = []
    # OTLP when an endpoint is given, or when asked for by name (then the spec's default URL).
    if endpoint or "otlp" in named:
        exporters.append("otlp")
    if "console" in named:
        exporters.append("console")
    if not exporters:
        return TracingConfig()
    return TracingConfig(
        exporters=tuple(exporters), otlp_endpoint=endpoint or "http://localhost:4318/v1/traces",
        service_name=settings.otel_service_name or f"stratus-{component}",
    )  # fmt: skip


def setup_tracing(component: str, settings: Settings) -> Callable[[], None] | None:
    """Install an exporting provider if the standard variables ask for one; returns its
    shutdown (flushes pending spans), or None when tracing stays off."""
    config = tracing_config(component, settings)
    if not config.exporters:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    resource = Resource.create({
        "service.name": config.service_name, "service.instance.id": f"{component}-{os.getpid()}",
        "stratus.component": component,
    })  # fmt: skip
    provider = TracerProvider(resource=resource)
    for name in config.exporters:
        exporter: SpanExporter = (
            OTLPSpanExporter(endpoint=config.otlp_endpoint) if name == "otlp" else ConsoleSpanExporter()
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # flush what is pending when the process ends
    log.info("%s: exporting traces (%s) as %s", component, ", ".join(config.exporters), config.service_name)
    return provider.shutdown


def append_span(stream_id: str, events: int) -> AbstractContextManager[Span]:
    """An append to the log (one transaction; ``stream_id`` is its first stream)."""
    return _TRACER.start_as_current_span(
        "append", kind=SpanKind.CLIENT,
        attributes={"db.system.name": "postgresql", "stratus.stream": stream_id, "stratus.events": events},
    )  # fmt: skip


def publish_span(carrier: Mapping[str, str], subject: str, position: int, event_type: str) -> Span | None:
    """The relay's publish of one event, child of the span that appended it; None when the event
    carries no trace context (nothing to continue). End it with ``end_publish``."""
    parent = extract(carrier)
    if parent is None or not trace.get_current_span(parent).get_span_context().is_valid:
        return None
    return _TRACER.start_span(
        f"publish {event_type}", context=parent, kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "nats", "messaging.destination.name": subject,
            "stratus.position": position, "stratus.event_type": event_type,
        },
    )  # fmt: skip


def end_publish(span: Span, acked: bool) -> None:
    if not acked:
        span.set_status(Status(StatusCode.ERROR, "not acked by JetStream"))
    span.end()


def reconcile_span(key: str, carrier: Mapping[str, str] | None) -> AbstractContextManager[trace.Span]:
    """A reconcile of ``key``, child of the span whose message woke it (if any)."""
    return tracer().start_as_current_span(
        "reconcile", context=extract(carrier or {}), attributes={"stratus.service": key}
    )


def provider_span(call: str, cloud: str, service: str, replica_id: int) -> AbstractContextManager[trace.Span]:
    """A call to a cloud provider (launch, terminate...), inside the reconcile that makes it."""
    return tracer().start_as_current_span(
        f"provider.{call}", kind=trace.SpanKind.CLIENT,
        attributes={
            "stratus.cloud": cloud or "local", "stratus.service": service, "stratus.replica_id": replica_id,
        },
    )  # fmt: skip


def span_from(
    name: str, carrier: Mapping[str, str] | None, **attributes: str | int
) -> AbstractContextManager[trace.Span]:
    """A span continuing the trace ``carrier`` names (an event's ``trace``), or a new one."""
    return tracer().start_as_current_span(name, context=extract(carrier or {}), attributes=attributes)
