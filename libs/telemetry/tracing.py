"""Tracing with OpenTelemetry: spans for API requests, handled messages and reconciles, linked
across processes by the W3C trace context every event carries (``RecordedEvent.trace``, the
``traceparent`` header on the bus).

Off unless configured: with no tracer provider installed, the OpenTelemetry API hands out
non-recording spans (a few hundred nanoseconds each, nothing exported). ``setup_tracing`` installs
one exporting with OTLP over HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, the standard variables; that needs the
``opentelemetry-exporter-otlp-proto-http`` package, which is not a dependency of Stratus: without
it a warning says so and tracing stays off. Any other exporter can be plugged in by installing a
``TracerProvider`` before the process starts its work (``opentelemetry.trace.set_tracer_provider``;
the tests use an in-memory one).
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

_PROPAGATOR = TraceContextTextMapPropagator()


def tracer() -> trace.Tracer:
    return trace.get_tracer("stratus")


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


def setup_tracing(component: str, env: Mapping[str, str] | None = None) -> Callable[[], None] | None:
    """Install an OTLP-exporting provider if the standard variables ask for one; returns its
    shutdown (flushes pending spans), or None when tracing stays off."""
    env = os.environ if env is None else env
    if not (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter,
        )
    except ImportError:
        log.warning(
            "%s: OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp-proto-http is not "
            "installed: tracing stays off (pip install opentelemetry-exporter-otlp-proto-http)",
            component,
        )
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = env.get("OTEL_SERVICE_NAME") or f"stratus-{component}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # flush what is pending when the process ends
    log.info("%s: exporting traces with OTLP", component)
    return provider.shutdown


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
