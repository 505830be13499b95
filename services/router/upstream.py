"""Upstream side: replica addresses, keep-alive connection pools and the response parser.

One :class:`UpstreamPool` per replica holds its idle keep-alive connections
(LIFO: the most recently used connection is the least likely to have been
closed by the replica). An :class:`UpstreamConnection` is an asyncio Protocol
that parses responses with ``httptools`` and hands them, already filtered of
hop-by-hop fields, to its current :class:`ResponseSink` (the proxy's exchange).

Response framing seen by the sink (``mode``):

- ``BODY_NONE``    no body (204, 304, or the answer to HEAD)
- ``BODY_LENGTH``  ``Content-Length`` body
- ``BODY_CHUNKED`` chunked body (delivered de-chunked)
- ``BODY_CLOSE``   body delimited by the replica closing the connection

An answer to HEAD that announces a body (non-zero length, chunked, or
close-delimited) completes at its head and the connection is then closed
rather than pooled, since the response parser cannot be told the request
method.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from time import monotonic
from typing import Protocol, cast
from urllib.parse import unquote, urlsplit

from httptools import HttpParserError, HttpResponseParser

from services.router.errors import InvalidUpstreamURL, UpstreamConnectError
from services.router.http1 import (
    CRLF,
    HEADER_SEP,
    RESPONSE_SPECIAL,
    RESPONSE_SPECIAL_LENGTHS,
    connection_tokens,
    drop_named_fields,
    is_chunked,
)

log = logging.getLogger(__name__)

BODY_NONE = 0
BODY_LENGTH = 1
BODY_CHUNKED = 2
BODY_CLOSE = 3


@dataclass(frozen=True, slots=True)
class UpstreamAddress:
    """Where a replica listens: ``http://host:port`` or ``http+unix://<percent-encoded path>``."""

    url: str
    host: str | None
    port: int
    unix_path: str | None
    host_header: bytes  # used only when the client sent no Host (HTTP/1.0)

    @classmethod
    def parse(cls, url: str) -> UpstreamAddress:
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise InvalidUpstreamURL(f"invalid upstream URL {url!r}: {exc}") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise InvalidUpstreamURL(f"upstream URL {url!r} must not have a path, query or fragment")
        if parts.scheme == "http+unix":
            path = unquote(parts.netloc)
            if not path:
                raise InvalidUpstreamURL(f"upstream URL {url!r} has no socket path")
            return cls(url, None, 0, path, b"localhost")
        if parts.scheme != "http":
            raise InvalidUpstreamURL(f"upstream URL {url!r}: scheme must be http or http+unix")
        try:
            host, port = parts.hostname, parts.port or 80
        except ValueError as exc:
            raise InvalidUpstreamURL(f"invalid upstream URL {url!r}: {exc}") from None
        if not host:
            raise InvalidUpstreamURL(f"upstream URL {url!r} has no host")
        shown = f"[{host}]" if ":" in host else host
        return cls(url, host, port, None, f"{shown}:{port}".encode())


class ResponseSink(Protocol):
    """What an upstream connection reports to the exchange it is serving."""

    def response_interim(self, status: int, reason: bytes, parts: list[bytes]) -> None: ...

    def response_head(self, status: int, reason: bytes, parts: list[bytes], mode: int) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_complete(self, keep_alive: bool) -> None: ...

    def flush_response(self) -> None: ...

    def upstream_lost(self, up: UpstreamConnection, exc: Exception | None) -> None: ...

    def upstream_error(self, up: UpstreamConnection, message: str) -> None: ...

    def upstream_write_paused(self, paused: bool) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to a replica."""

    __slots__ = (
        "_chunked",
        "_conn_tokens",
        "_has_length",
        "_interim",
        "_length",
        "_mode",
        "closed",
        "got_bytes",
        "head_request",
        "idle_since",
        "parser",
        "parts",
        "pool",
        "read_paused",
        "reason",
        "sink",
        "transport",
        "write_paused",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self.sink: ResponseSink | None = None
        self.got_bytes = False
        self.head_request = False
        self.closed = False
        self.read_paused = False
        self.write_paused = False
        self.idle_since = 0.0
        self.parts: list[bytes] = [b""]
        self.reason = b""
        self._has_length = False
        self._length = b""
        self._chunked = False
        self._conn_tokens: list[bytes] | None = None
        self._interim = False
        self._mode = BODY_NONE

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.pool.conns.add(self)

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is None:  # nothing was asked: a broken or confused replica
            self.abort()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except HttpParserError as exc:
            sink = self.sink
            cause = exc.__context__
            if cause is not None and not isinstance(cause, HttpParserError):
                log.error("error while relaying a response from %s", self.pool.address.url, exc_info=cause)
            self.abort()
            if sink is not None:
                self.sink = None
                sink.upstream_error(self, f"invalid response from upstream {self.pool.address.url}: {exc}")
            return
        sink = self.sink
        if sink is not None:
            sink.flush_response()

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost completes a close-delimited body

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.lost(self)
        sink = self.sink
        if sink is not None:
            self.sink = None
            if self._mode == BODY_CLOSE and exc is None:
                sink.response_complete(False)
            else:
                sink.upstream_lost(self, exc)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.sink is not None:
            self.sink.upstream_write_paused(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.sink is not None:
            self.sink.upstream_write_paused(False)

    # -- httptools callbacks -------------------------------------------------
    def on_message_begin(self) -> None:
        self.parts = [b""]  # slot 0: the status line, filled in by the sink
        self.reason = b""
        self._has_length = False
        self._chunked = False
        self._conn_tokens = None
        self._mode = BODY_NONE

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in RESPONSE_SPECIAL_LENGTHS:
            lname = name.lower()
            if lname in RESPONSE_SPECIAL:
                if lname == b"content-length":
                    self._has_length = True
                    self._length = value
                else:
                    if lname == b"transfer-encoding":
                        self._chunked = is_chunked(value)
                    elif lname == b"connection":
                        extra = [t for t in connection_tokens(value) if t not in (b"close", b"keep-alive")]
                        if extra:
                            self._conn_tokens = (self._conn_tokens or []) + extra
                    return
        self.parts += (name, HEADER_SEP, value, CRLF)

    def on_headers_complete(self) -> None:
        sink = self.sink
        if sink is None:
            return
        status = self.parser.get_status_code()
        parts = self.parts
        if self._conn_tokens:
            parts = drop_named_fields(parts, set(self._conn_tokens), 1)
        if status < 200:
            if status == 101:
                raise HttpParserError("unexpected 101 Switching Protocols (upgrades are not proxied)")
            self._interim = True
            sink.response_interim(status, self.reason, parts)
            return
        if status == 204 or status == 304:
            mode = BODY_NONE
        elif self._chunked:
            mode = BODY_CHUNKED
        elif self._has_length:
            mode = BODY_LENGTH
        else:
            mode = BODY_CLOSE
        if self.head_request:
            sink.response_head(status, self.reason, parts, BODY_NONE)
            if mode != BODY_NONE and not (mode == BODY_LENGTH and self._length.strip() == b"0"):
                # The parser would wait for the announced body: finish here and
                # do not reuse the connection.
                sink.response_complete(False)
            return
        self._mode = mode
        sink.response_head(status, self.reason, parts, mode)

    def on_body(self, body: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink.response_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._mode = BODY_NONE
        sink = self.sink
        if sink is not None:
            sink.response_complete(self.parser.should_keep_alive())

    # -- used by the proxy ----------------------------------------------------
    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def pause_reading(self) -> None:
        t = self.transport
        if not self.read_paused and t is not None and not t.is_closing():
            self.read_paused = True
            t.pause_reading()

    def resume_reading(self) -> None:
        t = self.transport
        if self.read_paused and t is not None and not t.is_closing():
            self.read_paused = False
            t.resume_reading()

    def release(self, reusable: bool) -> None:
        """The exchange is done with this connection: pool it, or close it."""
        self.sink = None
        if reusable and not self.closed:
            if self.read_paused:
                self.resume_reading()
            self.pool.put(self)
        else:
            self.close()

    def close(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.close()

    def abort(self) -> None:
        t = self.transport
        if t is not None and not self.closed:
            t.abort()


class UpstreamPool:
    """Keep-alive connections to one replica address."""

    __slots__ = ("address", "closed", "conns", "idle", "max_idle")

    def __init__(self, address: UpstreamAddress, max_idle: int = 1024) -> None:
        self.address = address
        self.max_idle = max_idle
        self.idle: list[UpstreamConnection] = []
        self.conns: set[UpstreamConnection] = set()
        self.closed = False

    def take(self) -> UpstreamConnection | None:
        """An idle connection (most recently used first), or None."""
        idle = self.idle
        while idle:
            c = idle.pop()
            if not c.closed:
                return c
        return None

    def put(self, c: UpstreamConnection) -> None:
        if self.closed or c.closed or len(self.idle) >= self.max_idle:
            c.close()
            return
        c.idle_since = monotonic()
        self.idle.append(c)

    def lost(self, c: UpstreamConnection) -> None:
        self.conns.discard(c)

    async def connect(self, limit: float) -> UpstreamConnection:
        """A new connection, opened within ``limit`` seconds."""
        loop = asyncio.get_running_loop()
        a = self.address
        factory = partial(UpstreamConnection, self)
        try:
            async with asyncio.timeout(limit):
                if a.unix_path is not None:
                    _, proto = await loop.create_unix_connection(factory, a.unix_path)
                else:
                    _, proto = await loop.create_connection(factory, a.host or "", a.port)
        except (OSError, TimeoutError) as exc:
            raise UpstreamConnectError(f"cannot connect to {a.url}: {exc!r}") from exc
        return proto

    def sweep(self, idle_before: float) -> None:
        """Close idle connections unused since ``idle_before`` (monotonic seconds)."""
        idle = self.idle
        n = 0
        while n < len(idle) and idle[n].idle_since < idle_before:
            idle[n].close()
            n += 1
        if n:
            del idle[:n]

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for c in idle:
            c.close()

    def close(self) -> None:
        """No more pooling; idle connections are closed, busy ones close when released."""
        self.closed = True
        self.close_idle()

    def abort_all(self) -> None:
        self.close()
        for c in list(self.conns):
            c.abort()
