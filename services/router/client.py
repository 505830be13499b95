"""One client connection: parses requests with ``httptools`` and starts their exchanges.

At the end of a request head it builds the upstream request head (hop-by-hop
fields dropped, ``X-Forwarded-For`` appended, ``Host`` kept as the client sent
it or set to the replica's ``host:port`` when absent) and starts an
:class:`~services.router.exchange.Exchange`, which streams the request body to
the replica as it arrives. Pipelined requests queue behind the active one.

Bounds on clients (slowloris and oversized heads): the request target is at most
``max_url_bytes`` (414), a head has at most ``max_headers`` fields and
``max_header_bytes`` bytes (431); a head must arrive whole within
``head_timeout`` of its first byte (of the connection, for the first request)
and a body may not stall longer than ``body_timeout`` while the router reads
it (408; the endpoint's tick checks both, see ``deadlines.py``). Each
answer closes the connection.

Back-pressure: a full upstream write buffer, too many request bytes buffered
with no upstream attached, or too many pipelined requests pause reading from
the client; a full client write buffer pauses reading from the replica.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import cast

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from services.router.errors import (
    BadRequest,
    HeadersTooLarge,
    ProxyError,
    Unauthorized,
    UpgradeNotSupported,
    UriTooLong,
)
from services.router.exchange import Exchange
from services.router.exchange_base import ExchangeBase, log
from services.router.flow import DONE, IDEMPOTENT_METHODS, MAX_PIPELINED, PAUSE_PENDING, PAUSE_QUEUE
from services.router.http1 import (
    CRLF,
    HEADER_SEP,
    REQUEST_SPECIAL,
    REQUEST_SPECIAL_LENGTHS,
    TE_CHUNKED,
    connection_tokens,
    drop_named_fields,
    error_response,
    is_chunked,
)
from services.router.replicas import ReplicaPool
from services.router.sides import ClientEndpoint


class ClientConnection(asyncio.Protocol):
    """One downstream (client) connection."""

    __slots__ = (
        "_auth",
        "_check",
        "_chunked",
        "_conn_tokens",
        "_expect",
        "_has_body",
        "_host",
        "_max_fields",
        "_nfields",
        "_parts",
        "_url",
        "_xff_in",
        "active",
        "closed",
        "cur",
        "ep",
        "head_bytes",
        "head_since",
        "idle_since",
        "in_feed",
        "in_head",
        "last_read",
        "out",
        "parser",
        "paused",
        "peer",
        "pool",
        "queue",
        "transport",
        "write_paused",
    )

    def __init__(self, ep: ClientEndpoint[ClientConnection]) -> None:
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
        self.head_since = 0.0  # when the head being received began
        self.last_read = 0.0  # when bytes last arrived (the endpoint's coarse clock)
        self._nfields = 0
        self._max_fields = ep.options.max_headers
        self._check: Callable[[bytes], bool] | None = None  # the endpoint's API key check
        self._auth: bytes | None = None
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
        self.idle_since = self.head_since = self.last_read = self.ep.now
        self.in_head = True  # waiting for the first request head: head_timeout applies

    def data_received(self, data: bytes) -> None:
        self.last_read = self.ep.now
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
            if self.head_bytes > self.ep.options.max_header_bytes:
                self.reject(HeadersTooLarge(f"request head over {self.ep.options.max_header_bytes} bytes"))
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
        self.head_since = self.ep.now
        self._nfields = 0
        self._check = self.ep.key_check
        self._auth = None
        self._url = b""
        self._parts = [b""]  # slot 0: the request line
        self._host = False
        self._xff_in = None
        self._chunked = False
        self._has_body = False
        self._expect = False
        self._conn_tokens = None

    def on_url(self, url: bytes) -> None:
        u = self._url + url
        if len(u) > self.ep.options.max_url_bytes:
            raise UriTooLong(f"request target over {self.ep.options.max_url_bytes} bytes")
        self._url = u

    def on_header(self, name: bytes, value: bytes) -> None:
        n = self._nfields = self._nfields + 1
        if n > self._max_fields:
            raise HeadersTooLarge(f"more than {self._max_fields} header fields")
        if self._check is not None and len(name) == 13 and name.lower() == b"authorization":
            self._auth = value  # the endpoint's key is for the router: replicas never see it
            return
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
        if self._check is not None and not _key_ok(self._check, self._auth):
            ex.error = Unauthorized(BAD_KEY if self._auth else NO_KEY)
            self._start(ex)
            return
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

    def exchange_done(self, ex: ExchangeBase, close: bool) -> None:
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
        if isinstance(cause, ProxyError):  # a bound exceeded (raised in a callback)
            self.reject(cause)
            return
        if cause is not None and not isinstance(cause, HttpParserError):
            log.error("service %s: error while handling a request", self.pool.service, exc_info=cause)
        self.reject(BadRequest(f"invalid HTTP request: {exc}"))

    def reject(self, error: ProxyError) -> None:
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
        self.transport.write(error_response(error.status, error.message, close=True, fields=error.fields))
        self.close()


NO_KEY = "an endpoint API key is required: Authorization: Bearer <key>"
BAD_KEY = "the endpoint API key is not valid for this endpoint"


def _key_ok(check: Callable[[bytes], bool], value: bytes | None) -> bool:
    return value is not None and value[:7].lower() == b"bearer " and check(value[7:].strip())
