"""Telemetry for every Stratus process: causation around handled messages, Prometheus metrics,
OpenTelemetry traces. Nothing here changes what a service decides; it only records."""
