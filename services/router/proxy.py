"""The per-request path: client connections and request/response exchanges.

Everything here is callbacks on asyncio Protocols; no task or coroutine runs
per request (a task runs only to open a new upstream connection).

A :class:`ClientConnection` parses requests with ``httptools``. At the end of
a request head it builds the upstream request head (hop-by-hop fields
dropped, ``X-Forwarded-For`` appended, ``Host`` kept as the client sent it or
set to the replica's ``host:port`` when absent) and starts an
:class:`Exchange`, which picks a replica, takes a pooled keep-alive
connection (or opens one) and streams the request body to it as it arrives.
The response is streamed back as it arrives; writes made while handling one
read are coalesced into one ``transport.write``.

Back-pressure runs both ways: a full upstream write buffer pauses reading
from the client, a full client write buffer pauses reading from the replica,
and request bytes buffered while no upstream connection is attached (opening,
held, pipelined) pause the client past ``PENDING_HIGH`` bytes.

Retries: a request is sent again, to another replica when there is one, when
connecting fails (nothing was sent) or when a pooled keep-alive connection
is closed by the replica before any byte of a response (the bytes already
sent are kept, up to ``REPLAY_LIMIT``, to be sent again). It is never retried
once the replica began to respond.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from services.router.errors import (
    BadRequest,
    HeadersTooLarge,
    HoldTimeout,
    NoReadyReplica,
    ProxyError,
    UpgradeNotSupported,
    UpstreamFailed,
    UpstreamTimeout,
)
from services.router.http1 import (
    CONN_CLOSE,
    CONN_KEEP_ALIVE,
    CRLF,
    HEADER_SEP,
    LAST_CHUNK,
    REQUEST_SPECIAL,
    REQUEST_SPECIAL_LENGTHS,
    TE_CHUNKED,
    connection_tokens,
    drop_named_fields,
    error_response,
    is_chunked,
    status_line,
)
from services.router.replicas import READY, Replica, ReplicaPool
from services.router.upstream import BODY_LENGTH, BODY_NONE, UpstreamConnection

if TYPE_CHECKING:
    from services.router.endpoint import ServiceEndpoint

log = logging.getLogger(__name__)

# Exchange states
NEW = 0  # head parsed, not dispatched yet (pipelined behind another request)
HELD = 1  # waiting for a ready replica (hold-when-empty)
CONNECTING = 2  # opening an upstream connection
ATTACHED = 3  # bound to an upstream connection
DONE = 4

# Client-side body framing of the response
C_NONE = 0
C_LENGTH = 1
C_CHUNKED = 2
C_RAW = 3  # HTTP/1.0 client, unknown length: raw bytes, then close

# Reasons for pausing reads from the client (bit set)
PAUSE_UPSTREAM = 1  # upstream write buffer full
PAUSE_PENDING = 2  # too many request bytes buffered with no upstream attached
PAUSE_QUEUE = 4  # too many pipelined requests

PENDING_HIGH = 256 * 1024
REPLAY_LIMIT = 1024 * 1024
DISCARD_LIMIT = 1024 * 1024  # request body read and dropped after an early error answer
MAX_PIPELINED = 16


IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})


class Exchange:
    """One request and its response."""

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
        "state",
        "tried",
        "upstream",
    )

    def __init__(self, client: ClientConnection, is_head: bool, http11: bool, keep_alive: bool) -> None:
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

    # -- request side ------------------------------------------------------------
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
        up.sink = self
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
        if r is not None and isinstance(exc.__cause__, ConnectionRefusedError):
            r.upstream.close_idle()  # the replica is gone; its pooled connections are stale
        self.retry(stale=False, why=str(exc))

    def request_body(self, data: bytes) -> None:
        if self.state == DONE:
            if self.deferred is not None:
                self.discarded += len(data)
                if self.discarded > DISCARD_LIMIT:
                    error, self.deferred = self.deferred, None
                    self._answer_error(error, True)
            return
        if self.chunked:
            self.pending += (b"%x\r\n" % len(data), data, CRLF)
        else:
            self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > PENDING_HIGH and (self.upstream is None or self is not self.client.active):
            self.client.pause(PAUSE_PENDING)

    def request_done(self) -> None:
        self.req_complete = True
        if self.state == DONE:
            if self.deferred is not None:
                error, self.deferred = self.deferred, None
                self._answer_error(error, False)
            return
        if self.chunked:
            self.pending.append(LAST_CHUNK)
        if self.state == ATTACHED:
            self.client.ep.arm(self)

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

    # -- response side (ResponseSink) ------------------------------------------------
    def response_interim(self, status: int, reason: bytes, parts: list[bytes]) -> None:
        if self.http11:
            parts[0] = status_line(status, reason)
            parts.append(CRLF)
            self.client.out.append(b"".join(parts))

    def response_head(self, status: int, reason: bytes, parts: list[bytes], mode: int) -> None:
        self.resp_started = True
        self.replay = None
        client = self.client
        ep = client.ep
        if ep.waiting:
            ep.waiting.pop(self, None)
        http11 = self.http11
        if self.is_head or mode == BODY_NONE:
            cmode = C_NONE
        elif mode == BODY_LENGTH:
            cmode = C_LENGTH
        elif http11:
            cmode = C_CHUNKED
            parts.append(TE_CHUNKED)
        else:
            cmode = C_RAW
            self.close_after = True
        self.mode = cmode
        if self.close_after or not self.keep_alive or not self.req_complete or ep.closing:
            self.close_after = True
            if http11:
                parts.append(CONN_CLOSE)
        elif not http11:
            parts.append(CONN_KEEP_ALIVE)
        parts[0] = status_line(status, reason)
        parts.append(CRLF)
        client.out.append(b"".join(parts))

    def response_body(self, data: bytes) -> None:
        mode = self.mode
        if mode == C_CHUNKED:
            self.client.out += (b"%x\r\n" % len(data), data, CRLF)
        elif mode != C_NONE:
            self.client.out.append(data)

    def flush_response(self) -> None:
        client = self.client
        out = client.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            assert client.transport is not None
            client.transport.write(data)

    def response_complete(self, keep_alive: bool) -> None:
        if self.mode == C_CHUNKED:
            self.client.out.append(LAST_CHUNK)
        self.flush_response()
        up = self.upstream
        if up is not None:
            self.upstream = None
            self._detach(up, keep_alive and self.req_complete and not self.pending)
        self._finish(self.close_after)

    def upstream_lost(self, up: UpstreamConnection, exc: Exception | None) -> None:
        self.upstream = None
        if up.write_paused:
            self.client.resume(PAUSE_UPSTREAM)
        if self.state == DONE:
            return
        if self.resp_started:
            self._truncated()
            return
        why = f"connection closed ({exc!r})" if exc is not None else "connection closed"
        if (self.reused or self.idempotent) and not up.got_bytes and self.replay is not None:
            # A pooled keep-alive connection the replica had closed (send again, same replica
            # allowed), or an idempotent request whose replica died before answering (send
            # again elsewhere).
            self.pending[:0] = self.replay
            self.pending_size = sum(len(b) for b in self.pending)
            self.replay = None
            self.retry(stale=self.reused, why=why)
            return
        self.attempts += 1
        self.fail(self._upstream_failed(f"replica closed the connection before responding: {why}"))

    def upstream_error(self, up: UpstreamConnection, message: str) -> None:
        self.upstream = None
        if up.write_paused:
            self.client.resume(PAUSE_UPSTREAM)
        if self.state == DONE:
            return
        log.warning("service %s: %s", self.client.pool.service, message)
        if self.resp_started:
            self._truncated()
        else:
            self.fail(UpstreamFailed(message))

    def upstream_write_paused(self, paused: bool) -> None:
        if paused:
            self.client.pause(PAUSE_UPSTREAM)
        else:
            self.client.resume(PAUSE_UPSTREAM)

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
        log.info(
            "service %s: retrying on replica %d after replica %d failed: %s",
            pool.service,
            nxt.replica_id,
            r.replica_id,
            why,
        )
        if stale:
            self.force_new = True
        self.start_on(nxt)

    def timed_out(self, timeout: float) -> None:
        if self.state != DONE and not self.resp_started:
            self.fail(UpstreamTimeout(f"replica did not answer within {timeout:g} s"))

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
        close = close or self.close_after or not self.keep_alive or not self.req_complete or client.ep.closing
        if client.transport is not None and not client.closed:
            client.out.append(error_response(error.status, error.message, close=close, http11=self.http11))
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
        self._release_replica()
        client = self.client
        ep = client.ep
        if ep.waiting:
            ep.waiting.pop(self, None)
        client.exchange_done(self, close)


class ClientConnection(asyncio.Protocol):
    """One downstream (client) connection."""

    __slots__ = (
        "_chunked",
        "_conn_tokens",
        "_expect",
        "_has_body",
        "_host",
        "_parts",
        "_url",
        "_xff_in",
        "active",
        "closed",
        "cur",
        "ep",
        "head_bytes",
        "idle_since",
        "in_feed",
        "in_head",
        "out",
        "parser",
        "paused",
        "peer",
        "pool",
        "queue",
        "transport",
        "write_paused",
    )

    def __init__(self, ep: ServiceEndpoint) -> None:
        self.ep = ep
        self.pool: ReplicaPool = ep.pool
        self.transport: asyncio.Transport | None = None
        self.parser = HttpRequestParser(self)
        self.cur: Exchange | None = None  # request whose head was parsed and body not yet complete
        self.active: Exchange | None = None  # request being proxied (the response is for it)
        self.queue: deque[Exchange] | None = None  # pipelined requests behind ``active``
        self.out: list[bytes] = []  # response bytes to write at the end of the current read
        self.paused = 0
        self.write_paused = False
        self.closed = False
        self.in_feed = False
        self.in_head = False
        self.head_bytes = 0
        self.idle_since = 0.0
        self.peer = b"unknown"
        self._url = b""
        self._parts: list[bytes] = []
        self._host = False
        self._xff_in: bytes | None = None
        self._chunked = False
        self._has_body = False
        self._expect = False
        self._conn_tokens: list[bytes] | None = None

    # -- asyncio.Protocol -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer = str(peer[0]).encode()
        self.ep.clients.add(self)
        self.idle_since = self.ep.now

    def data_received(self, data: bytes) -> None:
        if self.cur is None:
            self.head_bytes += len(data)
        self.in_feed = True
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self.in_feed = False
            self._after_upgrade(data, int(exc.args[0]))
            return
        except HttpParserError as exc:
            self.in_feed = False
            self._parse_error(exc)
            return
        self.in_feed = False
        ex = self.active
        if ex is not None and ex.pending and ex.upstream is not None:
            ex.flush_request()
        if self.in_head:
            if self.head_bytes > self.ep.max_header_bytes:
                self._reject(HeadersTooLarge("request head too large"))
        elif self.cur is None:
            self.head_bytes = 0

    def eof_received(self) -> bool | None:
        return None  # the client is gone: close (connection_lost cancels its request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ep.clients.discard(self)
        ex = self.active
        self.active = None
        self.queue = None
        self.cur = None
        if ex is not None:
            ex.abort()

    def pause_writing(self) -> None:
        self.write_paused = True
        ex = self.active
        if ex is not None and ex.upstream is not None:
            ex.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self.active
        if ex is not None and ex.upstream is not None:
            ex.upstream.resume_reading()

    # -- httptools callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_head = True
        self._url = b""
        self._parts = [b""]  # slot 0: the request line
        self._host = False
        self._xff_in = None
        self._chunked = False
        self._has_body = False
        self._expect = False
        self._conn_tokens = None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in REQUEST_SPECIAL_LENGTHS:
            lname = name.lower()
            if lname in REQUEST_SPECIAL:
                if lname == b"host":
                    self._host = True
                elif lname == b"content-length":
                    if value.strip() not in (b"0", b""):
                        self._has_body = True
                elif lname == b"expect":
                    self._expect = value.strip().lower() == b"100-continue"
                elif lname == b"x-forwarded-for":
                    xff = self._xff_in
                    self._xff_in = value if xff is None else xff + b", " + value
                    return
                else:
                    if lname == b"transfer-encoding":
                        self._chunked = is_chunked(value)
                        self._has_body = True
                    elif lname == b"connection":
                        extra = [t for t in connection_tokens(value) if t not in (b"close", b"keep-alive")]
                        if extra:
                            self._conn_tokens = (self._conn_tokens or []) + extra
                    return
        self._parts += (name, HEADER_SEP, value, CRLF)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        p = self.parser
        method = p.get_method()
        ex = Exchange(self, method == b"HEAD", p.get_http_version() == "1.1", p.should_keep_alive())
        ex.idempotent = method in IDEMPOTENT_METHODS and not self._has_body
        self.cur = ex
        self.pool.request_count += 1
        if p.should_upgrade() and (method == b"CONNECT" or self._has_body):
            ex.close_after = True
            what = method.decode(errors="replace")
            ex.error = UpgradeNotSupported(f"{what} and protocol upgrades with a body are not proxied")
            self._start(ex)
            return
        ex.chunked = self._chunked
        ex.expect_continue = self._expect
        parts = self._parts
        if self._conn_tokens:
            parts = drop_named_fields(parts, set(self._conn_tokens), 1)
        xff = self._xff_in
        parts.append(b"X-Forwarded-For: " + (self.peer if xff is None else xff + b", " + self.peer) + CRLF)
        if self._chunked:
            parts.append(TE_CHUNKED)
        parts.append(CRLF)
        line = method + b" " + self._url + b" HTTP/1.1\r\n"
        if self._host:
            parts[0] = line
            head = b"".join(parts)
            ex.pending.append(head)
            ex.pending_size = len(head)
        else:
            parts[0] = b""
            ex.head_rest = (line, b"".join(parts))  # completed with a Host field once a replica is chosen
        self._start(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.cur
        if ex is not None:
            ex.request_body(body)

    def on_message_complete(self) -> None:
        ex = self.cur
        if ex is not None:
            self.cur = None
            ex.request_done()

    # -- exchange management ---------------------------------------------------------------
    def _start(self, ex: Exchange) -> None:
        if self.active is None:
            self.active = ex
            ex.dispatch()
        else:
            q = self.queue
            if q is None:
                q = self.queue = deque()
            q.append(ex)
            if len(q) >= MAX_PIPELINED:
                self.pause(PAUSE_QUEUE)

    def exchange_done(self, ex: Exchange, close: bool) -> None:
        if self.active is ex:
            self.active = None
        self.idle_since = self.ep.now
        if self.closed:
            return
        if close:
            self.close()
            return
        if self.paused & PAUSE_PENDING and (self.cur is None or self.cur is ex):
            ex.pending.clear()  # answered early: the rest of its body is read and dropped
            self.resume(PAUSE_PENDING)
        if self.queue:
            self.ep.loop.call_soon(self._next)

    def _next(self) -> None:
        q = self.queue
        if self.closed or self.active is not None or not q:
            return
        ex = q.popleft()
        self.active = ex
        if self.paused & PAUSE_QUEUE and len(q) < MAX_PIPELINED:
            self.resume(PAUSE_QUEUE)
        ex.dispatch()
        if ex.upstream is not None and ex.pending:
            ex.flush_request()

    def pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def close(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.close()

    def abort(self) -> None:
        t = self.transport
        if t is not None and not self.closed:
            t.abort()

    def _after_upgrade(self, data: bytes, offset: int) -> None:
        # The request asked for a protocol upgrade. Upgrades are not proxied: a
        # body-less one was forwarded as a plain request (Upgrade dropped as
        # hop-by-hop); anything else was refused and the connection closes.
        self.parser = HttpRequestParser(self)
        self.in_head = False
        ex = self.active
        t = self.transport
        if self.closed or t is None or t.is_closing() or (ex is not None and ex.close_after):
            return
        if ex is not None and ex.pending and ex.upstream is not None:
            ex.flush_request()
        rest = data[offset:]
        if rest:
            self.data_received(rest)

    def _parse_error(self, exc: HttpParserError) -> None:
        cause = exc.__context__
        if cause is not None and not isinstance(cause, HttpParserError):
            log.error("service %s: error while handling a request", self.pool.service, exc_info=cause)
        self._reject(BadRequest(f"invalid HTTP request: {exc}"))

    def _reject(self, error: ProxyError) -> None:
        """A broken request stream: answer ``error`` if nothing is in progress, then close."""
        if self.closed:
            return
        ex = self.active
        if ex is not None and ex.state != DONE and (ex.resp_started or ex.upstream is not None):
            ex.abort()
            self.abort()
            return
        self.cur = None
        self.queue = None
        if ex is not None:
            ex.abort()
        self.active = None
        assert self.transport is not None
        self.transport.write(error_response(error.status, error.message, close=True))
        self.close()
