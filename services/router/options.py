"""Per-endpoint settings of the router (all durations in seconds)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.router.errors import ConfigError


@dataclass(frozen=True, slots=True)
class EndpointOptions:
    """Per-endpoint settings (all durations in seconds)."""

    hold_when_empty: bool = False
    """Hold requests while no replica is ready (scale-to-zero) instead of answering 503 at once."""
    max_queue: int = 1000
    """Most requests held at once; past it, 503."""
    max_wait: float = 60.0
    """Longest a request is held; then 503."""
    on_hold: Callable[[str], object] | None = None
    """Called with the service name when a request is held, at most once per ``max_wait``;
    may return an awaitable (run as a task)."""
    response_timeout: float | None = 600.0
    """From the request fully sent to the response head; then 504. None: no limit."""
    connect_timeout: float = 5.0
    max_attempts: int = 3
    """Attempts per request over connect failures and stale pooled connections."""
    upstream_idle_timeout: float = 3.0
    """Idle pooled upstream connections are closed after this (below uvicorn's 5 s keep-alive)."""
    client_idle_timeout: float | None = 75.0
    """Idle client keep-alive connections are closed after this. None: never."""
    head_timeout: float | None = 30.0
    """A request head must arrive whole within this, counted from its first byte (or from the
    connection, for the first request); then 408 and close. None: no limit."""
    body_timeout: float | None = 60.0
    """A request body may go this long without a byte arriving (while the router is reading
    it); then 408 (or a cut, if the response began) and close. None: no limit."""
    max_idle_per_replica: int = 1024
    max_header_bytes: int = 64 * 1024
    """Largest request head (request line and fields); 431 past it."""
    max_url_bytes: int = 8 * 1024
    """Longest request target; 414 past it."""
    max_headers: int = 100
    """Most header fields in one request; 431 past it."""
    backlog: int = 4096
    reuse_port: bool = False
    metrics: bool = True
    """Count requests for /metrics (``libs/telemetry/router_stats.py``); False counts nothing."""

    def __post_init__(self) -> None:
        if self.max_queue < 0 or self.max_wait <= 0:
            raise ConfigError("max_queue must be >= 0 and max_wait > 0")
        if self.response_timeout is not None and self.response_timeout <= 0:
            raise ConfigError("response_timeout must be > 0 or None")
        if self.connect_timeout <= 0 or self.upstream_idle_timeout <= 0:
            raise ConfigError("connect_timeout and upstream_idle_timeout must be > 0")
        if self.client_idle_timeout is not None and self.client_idle_timeout <= 0:
            raise ConfigError("client_idle_timeout must be > 0 or None")
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be >= 1")
        for name in ("head_timeout", "body_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be > 0 or None")
        if min(self.max_header_bytes, self.max_url_bytes, self.max_headers) < 1:
            raise ConfigError("max_header_bytes, max_url_bytes and max_headers must be >= 1")

    def tick_interval(self) -> float:
        spans = [self.upstream_idle_timeout]
        if self.response_timeout is not None:
            spans.append(self.response_timeout)
        for span in (self.client_idle_timeout, self.head_timeout, self.body_timeout):
            if span is not None:
                spans.append(span)
        if self.hold_when_empty:
            spans.append(self.max_wait)
        return max(0.01, min(1.0, *(s / 4 for s in spans)))
