"""An exchange's routing: choosing a replica, attaching a connection, retries and endings.

An exchange is one request and its response. :class:`ExchangeBase` holds its
state and everything that decides *where* it goes and *how it ends*: it picks a
replica, takes a pooled keep-alive connection (or asks the endpoint to open
one), retries, answers proxy errors and releases the replica. The byte streams
(request body up, response down) are added by ``exchange.Exchange``.

Retries: a request is sent again, to another replica when there is one, when
connecting fails (nothing was sent) or when a pooled keep-alive connection
is closed by the replica before any byte of a response (the bytes already
sent are kept, up to ``REPLAY_LIMIT``, to be sent again). It is never retried
once the replica began to respond.

The exchange sees its client connection and endpoint only through the :class:`ClientSide` and
:class:`EndpointSide` protocols: imports run flow <- exchange_base <- exchange <- client <- endpoint.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import Protocol, cast

from libs.telemetry.router_stats import EndpointStats
from services.router.errors import HoldTimeout, NoReadyReplica, ProxyError, UpstreamFailed
from services.router.flow import (
    ATTACHED,
    C_NONE,
    CONNECTING,
    DONE,
    HELD,
    NEW,
    PAUSE_PENDING,
    PAUSE_UPSTREAM,
    REPLAY_LIMIT,
)
from services.router.http1 import CRLF, error_response
from services.router.replicas import READY, Replica, ReplicaPool
from services.router.upstream import ResponseSink, UpstreamConnection

log = logging.getLogger("services.router.exchange")


class EndpointSide(Protocol):
    """What an exchange uses of its service endpoint."""

    hold_when_empty: bool
    stats: EndpointStats

    @property
    def now(self) -> float: ...

    @property
    def max_attempts(self) -> int: ...

    @property
    def closing(self) -> bool: ...

    @property
    def waiting(self) -> dict[ExchangeBase, float]: ...

    def hold(self, ex: ExchangeBase) -> None: ...

    def unhold(self, ex: ExchangeBase) -> None: ...

    def connect(self, ex: ExchangeBase, r: Replica) -> None: ...

    def arm(self, ex: ExchangeBase) -> None: ...


class ClientSide(Protocol):
    """What an exchange uses of its client connection."""

    last_read: float  # when request bytes last arrived (the body deadline counts from it)

    @property
    def ep(self) -> EndpointSide: ...

    @property
    def pool(self) -> ReplicaPool: ...

    @property
    def out(self) -> list[bytes]: ...

    @property
    def transport(self) -> asyncio.Transport | None: ...

    @property
    def closed(self) -> bool: ...

    @property
    def in_feed(self) -> bool: ...

    @property
    def write_paused(self) -> bool: ...

    @property
    def paused(self) -> int: ...

    @property
    def active(self) -> ExchangeBase | None: ...

    def pause(self, reason: int) -> None: ...

    def resume(self, reason: int) -> None: ...

    def exchange_done(self, ex: ExchangeBase, close: bool) -> None: ...


class ExchangeBase:
    """One request and its response: state, routing, retries and endings."""

    __slots__ = (
        "attempts",
        "chunked",
        "client",
        "close_after",
        "deferred",
        "discarded",
        "error",
        "expect_continue",
        "force_new",
        "head_rest",
        "held_since",
        "http11",
        "idempotent",
        "is_head",
        "keep_alive",
        "mode",
        "pending",
        "pending_size",
        "replay",
        "replay_size",
        "replica",
        "req_complete",
        "resp_started",
        "reused",
        "started",
        "state",
        "status",
        "tried",
        "upstream",
    )

    def __init__(self, client: ClientSide, is_head: bool, http11: bool, keep_alive: bool) -> None:
        self.client = client
        self.is_head = is_head
        self.http11 = http11
        self.keep_alive = keep_alive
        self.chunked = False
        self.state = NEW
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.head_rest: tuple[bytes, bytes] | None = None  # head without Host, until a replica is chosen
        self.req_complete = False
        self.replay: list[bytes] | None = None
        self.replay_size = 0
        self.replica: Replica | None = None
        self.upstream: UpstreamConnection | None = None
        self.reused = False
        self.force_new = False
        self.attempts = 0
        self.tried: list[Replica] | None = None
        self.resp_started = False
        self.mode = C_NONE
        # A body-less GET/HEAD/OPTIONS may be sent again to another replica when the chosen one
        # closes the connection before answering (it was killed mid-request).
        self.idempotent = False
        self.close_after = False
        self.held_since = 0.0
        self.error: ProxyError | None = None  # refused before dispatch
        self.deferred: ProxyError | None = None  # answer sent once the request body is read
        self.discarded = 0
        self.expect_continue = False
        self.started = perf_counter()  # for the latency histogram
        self.status = 0  # of the answer: the replica's, or the router's own error

    # -- routing -----------------------------------------------------------------
    def dispatch(self) -> None:
        client = self.client
        if client.closed or self.state == DONE:
            return
        if self.error is not None:
            self.fail(self.error)
            return
        r = client.pool.choose()
        if r is None:
            ep = client.ep
            if ep.hold_when_empty:
                ep.hold(self)
            else:
                self.fail(NoReadyReplica(f"no ready replica for service {client.pool.service}"))
            return
        self.start_on(r)

    def start_on(self, r: Replica) -> None:
        self.replica = r
        r.in_flight += 1
        r.served += 1
        up = None if self.force_new else r.upstream.take()
        if up is not None:
            self.attach(up, True)
        else:
            self.state = CONNECTING
            self.client.ep.connect(self, r)

    def attach(self, up: UpstreamConnection, reused: bool) -> None:
        self.state = ATTACHED
        self.upstream = up
        self.reused = reused
        up.sink = cast(ResponseSink, self)  # every exchange is an Exchange, which is the sink
        up.got_bytes = False
        up.head_request = self.is_head
        self.replay = [] if reused or self.idempotent else None
        self.replay_size = 0
        client = self.client
        if client.write_paused:
            up.pause_reading()
        if self.head_rest is not None:
            line, rest = self.head_rest
            self.pending.insert(0, line + b"Host: " + up.pool.address.host_header + CRLF + rest)
            self.head_rest = None
        if self.req_complete:
            client.ep.arm(self)
        if not client.in_feed:
            self.flush_request()

    def connect_failed(self, exc: BaseException) -> None:
        r = self.replica
        self.client.ep.stats.upstream_error(r)
        if r is not None and isinstance(exc.__cause__, ConnectionRefusedError):
            r.upstream.close_idle()  # the replica is gone; its pooled connections are stale
        self.retry(stale=False, why=str(exc))

    def flush_request(self) -> None:
        up = self.upstream
        pending = self.pending
        if up is None or not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self.pending_size = 0
        replay = self.replay
        if replay is not None:
            replay.append(data)
            self.replay_size += len(data)
            if self.replay_size > REPLAY_LIMIT:
                self.replay = None
        up.write(data)
        if self.client.paused & PAUSE_PENDING:
            self.client.resume(PAUSE_PENDING)

    def flush_response(self) -> None:
        client = self.client
        out = client.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            assert client.transport is not None
            client.transport.write(data)

    # -- endings ---------------------------------------------------------------------
    def retry(self, *, stale: bool, why: str) -> None:
        r = self.replica
        self._release_replica()
        self.attempts += 1
        if r is None:
            self.fail(self._upstream_failed(why))
            return
        tried = self.tried
        if tried is None:
            tried = self.tried = []
        tried.append(r)
        ep = self.client.ep
        if self.attempts >= ep.max_attempts or self.client.closed:
            self.fail(self._upstream_failed(why))
            return
        pool = self.client.pool
        nxt = pool.choose_excluding(tried)
        if nxt is None and stale and pool.is_eligible(r):
            nxt = r
        if nxt is None:
            self.fail(self._upstream_failed(why))
            return
        log.info("service %s: retrying on replica %d after replica %d failed: %s",
                 pool.service, nxt.replica_id, r.replica_id, why)  # fmt: skip
        if stale:
            self.force_new = True
        self.client.ep.stats.retries += 1
        self.start_on(nxt)

    def timed_out(self, timeout: float) -> None:
        raise NotImplementedError  # Exchange's: the stream timeout, before and during the response

    def hold_expired(self, waited: float) -> None:
        self.state = NEW
        service = self.client.pool.service
        self.fail(HoldTimeout(f"no ready replica for service {service} after waiting {waited:.1f} s"))

    def fail(self, error: ProxyError, close: bool = False) -> None:
        """Answer the client with ``error`` (or cut the response if it already began)."""
        if self.state == DONE:
            return
        up = self.upstream
        if up is not None:
            self.upstream = None
            self._detach(up, False)
        client = self.client
        if self.resp_started:
            self._truncated()
            return
        if not (self.req_complete or close or self.expect_continue or client.ep.closing or client.closed):
            # Read (and drop) the rest of the request body first, so that the
            # connection can stay open; the answer goes out in request_done.
            self.state = DONE
            self.deferred = error
            self._release_replica()
            if client.ep.waiting:
                client.ep.waiting.pop(self, None)
            self.pending.clear()
            self.pending_size = 0
            client.resume(PAUSE_PENDING)
            return
        self._answer_error(error, close)

    def _answer_error(self, error: ProxyError, close: bool) -> None:
        client = self.client
        self.status = error.status
        close = close or self.close_after or not self.keep_alive or not self.req_complete or client.ep.closing
        if client.transport is not None and not client.closed:
            answer = error_response(
                error.status, error.message, close=close, http11=self.http11, fields=error.fields
            )
            client.out.append(answer)
            self.flush_response()
        self._finish(close)

    def abort(self) -> None:
        """The client went away: drop everything, close the upstream connection."""
        state = self.state
        if state == DONE:
            return
        self.state = DONE
        if state == HELD:
            self.client.ep.unhold(self)
        up = self.upstream
        if up is not None:
            self.upstream = None
            up.sink = None
            up.abort()
        self._release_replica()
        ep = self.client.ep
        if ep.waiting:
            ep.waiting.pop(self, None)

    def _truncated(self) -> None:
        """The replica failed after the response began: deliver what came, then cut."""
        self.flush_response()
        self._finish(True)

    def _upstream_failed(self, why: str) -> UpstreamFailed:
        n = self.attempts
        return UpstreamFailed(
            f"{n} attempt{'s' if n != 1 else ''} to reach a replica of service "
            f"{self.client.pool.service} failed; last error: {why}"
        )

    def _detach(self, up: UpstreamConnection, reusable: bool) -> None:
        if up.write_paused:
            self.client.resume(PAUSE_UPSTREAM)
        up.release(reusable)

    def _release_replica(self) -> None:
        r = self.replica
        if r is not None:
            self.replica = None
            n = r.in_flight - 1
            r.in_flight = n
            if n == 0 and (r.state is not READY or r.waiters):
                self.client.pool.replica_idle(r)

    def _finish(self, close: bool) -> None:
        self.state = DONE
        client = self.client
        ep = client.ep
        ep.stats.finished(self.replica, self.status, perf_counter() - self.started)
        self._release_replica()
        if ep.waiting:
            ep.waiting.pop(self, None)
        client.exchange_done(self, close)
