"""``GET /healthz`` on a process's metrics server: is this process fit to do its work, and why not.

The answer is JSON, HTTP 200 when healthy and 503 otherwise, ``problems`` saying why:

    {"component": "scheduler", "healthy": true, "status": "ok", "problems": [],
     "projection": {"position": 1200, "lag": 0, "skipped": 0, "failure": ""},
     "store": "connected", "bus": "connected", "consumers": {"scheduler": 0}}

A service host (``host_probe``) is unhealthy when its fleet projection has failed (a known event
it cannot fold: the process is stopping), when Postgres does not answer the lag query (one
``SELECT max(position)``), when its NATS connection is not up (``reconnecting`` while nats-py
retries), or while it stops. ``consumers`` holds each durable consumer's last sampled lag
(JetStream pending + unacked; null until known). The relay's probe (``relay_metrics.relay_probe``)
says whether it leads or stands by, and how far the log's head is past its offset.

The metrics server answers on its own thread; the probe runs on the process's event loop (its
connections live there) and is waited for at most ``TIMEOUT`` seconds: a loop that does not
answer in time is itself a problem worth a 503. An answer is reused for ``MAX_AGE`` seconds, so
a busy scraper costs at most one probe a second.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from libs.events.projection import Health, projection_health

MAX_AGE = 1.0  # seconds an answer is reused
TIMEOUT = 2.0  # seconds the server thread waits for the event loop's probe
QUERY_TIMEOUT = 1.0  # seconds one store query of a probe may take

Report = dict[str, Any]
Probe = Callable[[], Awaitable[Report]]


class HealthEndpoint:
    """What the metrics server calls for ``/healthz`` (from its thread). Until ``attach`` gives
    it a probe and the loop to run it on, it answers 503 ``starting``."""

    def __init__(self, component: str, *, max_age: float = MAX_AGE, timeout: float = TIMEOUT) -> None:
        self.component = component
        self.max_age = max_age
        self.timeout = timeout
        self._probe: Probe | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._cached: tuple[float, int, bytes] | None = None

    def attach(self, probe: Probe, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._probe = probe
        with self._lock:
            self._cached = None

    def answer(self) -> tuple[int, bytes]:
        """The HTTP status and JSON body (a probe's at most ``max_age`` old)."""
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.max_age:
                return self._cached[1], self._cached[2]
            report = self._run()
            status = 200 if report.get("healthy") else 503
            body = json.dumps(report).encode()
            self._cached = (time.monotonic(), status, body)
            return status, body

    def _run(self) -> Report:
        if self._probe is None or self._loop is None:
            return unhealthy(self.component, "starting")
        call = _call(self._probe)
        try:
            future = asyncio.run_coroutine_threadsafe(call, self._loop)
        except RuntimeError:  # the loop is closed: the process is on its way out
            call.close()
            return unhealthy(self.component, "stopping")
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return unhealthy(self.component, f"event loop: no answer within {self.timeout:g}s")
        except concurrent.futures.CancelledError:
            return unhealthy(self.component, "stopping")


async def _call(probe: Probe) -> Report:
    return await probe()


def unhealthy(component: str, *problems: str) -> Report:
    return {"component": component, "healthy": False, "status": "failing", "problems": list(problems)}


def verdict(component: str, problems: list[str], **parts: Any) -> Report:
    return {
        "component": component, "healthy": not problems, "status": "ok" if not problems else "failing",
        "problems": problems, **parts,
    }  # fmt: skip


class Connection(Protocol):
    """A nats-py client, as far as its state goes."""

    @property
    def is_connected(self) -> bool: ...

    @property
    def is_reconnecting(self) -> bool: ...


def bus_state(nc: Connection | None) -> str:
    """``connected``, ``reconnecting`` (nats-py retrying after a disconnect) or ``disconnected``."""
    if nc is None:
        return "disconnected"
    if nc.is_connected:
        return "connected"
    return "reconnecting" if nc.is_reconnecting else "disconnected"


async def bounded_projection_health(projection: object) -> Health:
    """``projection_health`` with its lag query bounded (lag -1: the store did not answer)."""
    try:
        return await asyncio.wait_for(projection_health(projection), QUERY_TIMEOUT)
    except TimeoutError:
        failure = getattr(projection, "failure", None)
        return Health(
            healthy=failure is None, position=int(getattr(projection, "position", 0)), lag=-1,
            skipped=int(getattr(projection, "skipped", 0)), failure="" if failure is None else str(failure),
        )  # fmt: skip


class Sampled(Protocol):
    """A durable consumer's last sampled lag (``process.ConsumerGauges``)."""

    consumer: str

    @property
    def lag(self) -> int | None: ...


def host_probe(
    component: str, projection: object, *, bus: Callable[[], Connection | None] | None = None,
    consumers: Iterable[Sampled] = (), stopping: Callable[[], bool] = lambda: False,
) -> Probe:  # fmt: skip
    """The probe of a process folding a live projection (a service host; the API without ``bus``)."""

    async def probe() -> Report:
        h = await bounded_projection_health(projection)
        problems = [f"projection failed: {h.failure}"] if not h.healthy else []
        store = "connected" if h.lag >= 0 else "unreachable"
        if store != "connected":
            problems.append("store: unreachable")
        parts: dict[str, Any] = {
            "projection": {"position": h.position, "lag": h.lag, "skipped": h.skipped, "failure": h.failure},
            "store": store,
        }
        if bus is not None:
            parts["bus"] = bus_state(bus())
            if parts["bus"] != "connected":
                problems.append(f"bus: {parts['bus']}")
        parts["consumers"] = {c.consumer: c.lag for c in consumers}
        if stopping():
            problems.append("stopping")
        return verdict(component, problems, **parts)

    return probe
