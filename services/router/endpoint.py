"""One service's listening endpoint: the server socket, its options, held requests and timers.

Timers are coarse: one periodic tick per endpoint (at most every second,
more often when a configured timeout is short) expires response-header
timeouts and held requests and closes idle client and upstream connections.
Nothing is scheduled per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import ssl
from collections import deque
from collections.abc import Callable
from functools import partial
from time import monotonic
from typing import Any

from libs.telemetry.router_stats import endpoint_stats
from services.router.client import ClientConnection
from services.router.deadlines import enforce_read_deadlines
from services.router.errors import ConfigError, HoldQueueFull, NoReadyReplica
from services.router.exchange_base import ExchangeBase
from services.router.flow import CONNECTING, HELD, NEW
from services.router.options import EndpointOptions
from services.router.replicas import Replica, ReplicaPool

log = logging.getLogger(__name__)


class ServiceEndpoint:
    """Serves one service on one listening socket, proxying to the replicas of ``pool``."""

    def __init__(self, pool: ReplicaPool, options: EndpointOptions | None = None) -> None:
        self.pool = pool
        self.options = o = options if options is not None else EndpointOptions()
        # read on the request path
        self.hold_when_empty = o.hold_when_empty
        self.max_attempts = o.max_attempts
        self.response_timeout = o.response_timeout
        self.connect_timeout = o.connect_timeout
        # Endpoint API keys: None serves everyone; else a request needs ``Authorization: Bearer
        # <key>`` with key_check(key) true (set by the owner; 401 otherwise).
        self.key_check: Callable[[bytes], bool] | None = None
        self.tls: ssl.SSLContext | None = None
        self.clients: set[ClientConnection] = set()
        self.waiting: dict[ExchangeBase, float] = {}  # a replica's head or next byte due, oldest first
        self.held: deque[ExchangeBase] = deque()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closing = False
        self.now = monotonic()  # refreshed by the tick
        self.stats = endpoint_stats(o.metrics)  # request metrics (libs/telemetry/router_stats.py)
        self.port: int | None = None
        self.host: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._last_on_hold = -math.inf
        self._release_scheduled = False

    @property
    def service(self) -> str:
        return self.pool.service

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "endpoint not started"
        return self._loop

    # -- lifecycle -----------------------------------------------------------------
    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
    ) -> int:
        """Listen on ``host:port`` (0: an ephemeral port; HTTPS with ``tls``); returns the port."""
        if self._server is not None:
            raise ConfigError(f"endpoint of service {self.service} already started")
        self._loop = loop = asyncio.get_running_loop()
        o = self.options
        self._server = await loop.create_server(
            partial(ClientConnection, self),
            host,
            port,
            backlog=o.backlog,
            reuse_port=o.reuse_port or None,
            ssl=tls,
        )
        self.tls = tls
        self.host = host
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.pool.add_listener(self._on_pool_change)
        self._tick_handle = loop.call_later(o.tick_interval(), self._tick)
        return self.port

    async def close(self, grace: float = 0.0) -> None:
        """Stop listening, let in-flight requests run up to ``grace`` seconds, then cut the rest."""
        if self.closing:
            return
        self.closing = True
        self.pool.remove_listener(self._on_pool_change)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        server, self._server = self._server, None
        if server is not None:
            server.close()
        while self.held:
            self.held.popleft().fail(NoReadyReplica(f"service {self.service} is shutting down"))
        for c in list(self.clients):
            if c.active is None:
                c.close()
        if grace > 0:
            deadline = monotonic() + grace
            while any(c.active is not None for c in self.clients) and monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        for c in list(self.clients):
            c.abort()
        for t in list(self.tasks):
            t.cancel()
        for p in self.pool.upstream_pools():
            p.abort_all()
        if server is not None:
            await server.wait_closed()
        for _ in range(400):  # bounded: let transports deliver connection_lost
            if not self.clients and not self.tasks and not any(p.conns for p in self.pool.upstream_pools()):
                break
            await asyncio.sleep(0.005)
        self.pool.close()

    def take_request_count(self) -> int:
        """Requests received since the last call (for QPS sampling); resets the counter."""
        return self.pool.take_request_count()

    def held_count(self) -> int:
        return len(self.held)

    # -- used by the proxy ---------------------------------------------------------------
    def connect(self, ex: ExchangeBase, r: Replica) -> None:
        task = self.loop.create_task(r.upstream.connect(self.connect_timeout))
        self.tasks.add(task)
        task.add_done_callback(partial(self._connected, ex, r))

    def _connected(self, ex: ExchangeBase, r: Replica, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        mine = ex.state == CONNECTING and ex.replica is r
        if exc is not None:
            if mine:
                ex.connect_failed(exc)
            return
        up = task.result()
        if mine and not self.closing:
            ex.attach(up, False)
        else:
            r.upstream.put(up)  # keep it for the next request (closed if the replica is gone)

    def arm(self, ex: ExchangeBase) -> None:
        if self.response_timeout is not None:
            self.waiting[ex] = monotonic()

    def hold(self, ex: ExchangeBase) -> None:
        o = self.options
        if len(self.held) >= o.max_queue:
            ex.fail(HoldQueueFull(f"no ready replica for service {self.service} and the hold queue is full"))
            return
        ex.state = HELD
        ex.held_since = now = monotonic()
        self.held.append(ex)
        if o.on_hold is not None and now - self._last_on_hold >= o.max_wait:
            self._last_on_hold = now
            self._call_on_hold(o.on_hold)

    def unhold(self, ex: ExchangeBase) -> None:
        with contextlib.suppress(ValueError):
            self.held.remove(ex)

    def _call_on_hold(self, cb: Callable[[str], object]) -> None:
        try:
            result = cb(self.service)
        except Exception:
            log.exception("on_hold callback of service %s failed", self.service)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self.tasks.add(task)
            task.add_done_callback(self._on_hold_done)

    def _on_hold_done(self, task: asyncio.Future[Any]) -> None:
        assert isinstance(task, asyncio.Task)
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("on_hold callback of service %s failed", self.service, exc_info=task.exception())

    def _on_pool_change(self) -> None:
        if self.held and self.pool.eligible and not self._release_scheduled and self._loop is not None:
            self._release_scheduled = True
            self._loop.call_soon(self._release_held)

    def _release_held(self) -> None:
        self._release_scheduled = False
        held = self.held
        while held and self.pool.eligible and not self.closing:
            ex = held.popleft()
            if ex.state == HELD:
                ex.state = NEW
                ex.dispatch()

    def _tick(self) -> None:
        self.now = now = monotonic()
        o = self.options
        try:
            waiting = self.waiting
            if waiting and self.response_timeout is not None:
                limit = now - self.response_timeout
                expired = []
                for ex, t in waiting.items():
                    if t > limit:
                        break
                    expired.append(ex)
                for ex in expired:
                    del waiting[ex]
                    ex.timed_out(self.response_timeout)
            held = self.held
            while held and held[0].held_since <= now - o.max_wait:
                ex = held.popleft()
                ex.hold_expired(now - ex.held_since)
            if o.client_idle_timeout is not None:
                limit = now - o.client_idle_timeout
                for c in [c for c in self.clients if c.idle_since < limit]:
                    if c.active is None and c.cur is None:
                        c.close()
            if o.head_timeout is not None or o.body_timeout is not None:
                enforce_read_deadlines(self.clients, now, o.head_timeout, o.body_timeout)
            limit = now - o.upstream_idle_timeout
            for p in self.pool.upstream_pools():
                if p.idle:
                    p.sweep(limit)
        except Exception:
            log.exception("endpoint tick of service %s failed", self.service)
        if not self.closing and self._loop is not None:
            self._tick_handle = self._loop.call_later(o.tick_interval(), self._tick)
