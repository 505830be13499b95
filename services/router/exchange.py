"""An exchange's byte streams: the request body to the replica, the response to the client.

Everything here is callbacks; no task or coroutine runs per request. The
response is streamed back as it arrives; writes made while handling one read
are coalesced into one ``transport.write`` (``flush_response``). Request bytes
buffered while no upstream connection is attached (opening, held, pipelined)
pause the client past ``PENDING_HIGH`` bytes.
"""

from __future__ import annotations

from time import monotonic

from services.router.errors import UpstreamFailed, UpstreamTimeout
from services.router.exchange_base import ExchangeBase, log
from services.router.flow import (
    ATTACHED,
    C_CHUNKED,
    C_LENGTH,
    C_NONE,
    C_RAW,
    DISCARD_LIMIT,
    DONE,
    PAUSE_PENDING,
    PAUSE_UPSTREAM,
    PENDING_HIGH,
)
from services.router.http1 import CONN_CLOSE, CONN_KEEP_ALIVE, CRLF, LAST_CHUNK, TE_CHUNKED, status_line
from services.router.upstream import BODY_LENGTH, BODY_NONE, UpstreamConnection


class Exchange(ExchangeBase):
    """One request and its response (the :class:`~services.router.upstream.ResponseSink`)."""

    __slots__ = ()

    # -- request side ------------------------------------------------------------
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
        if self.state == ATTACHED and not self.resp_started:  # begun: armed by response_head
            self.client.ep.arm(self)

    # -- response side (ResponseSink) ------------------------------------------------
    def response_interim(self, status: int, reason: bytes, parts: list[bytes]) -> None:
        if status == 100 and self.expect_continue:
            # The client waited for this to send its body: the body deadline starts now.
            self.expect_continue = False
            self.client.last_read = self.client.ep.now
        if self.http11:
            parts[0] = status_line(status, reason)
            parts.append(CRLF)
            self.client.out.append(b"".join(parts))

    def response_head(self, status: int, reason: bytes, parts: list[bytes], mode: int) -> None:
        self.resp_started = True
        self.status = status
        self.replay = None
        client = self.client
        ep = client.ep
        if ep.waiting:
            ep.waiting.pop(self, None)
        # The stream timeout now bounds each wait for the next body byte (httpx's read timeout
        # in SkyServe's load balancer): re-armed by every read in response_body.
        ep.arm(self)
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
        waiting = self.client.ep.waiting
        if self in waiting:  # to the end: ``waiting`` stays ordered by when each was armed
            del waiting[self]
            waiting[self] = monotonic()
        mode = self.mode
        if mode == C_CHUNKED:
            self.client.out.extend((b"%x\r\n" % len(data), data, CRLF))
        elif mode != C_NONE:
            self.client.out.append(data)

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
        self.client.ep.stats.upstream_error(self.replica)
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
        self.client.ep.stats.upstream_error(self.replica)
        log.warning("service %s: %s", self.client.pool.service, message)
        if self.resp_started:
            self._truncated()
        else:
            self.fail(UpstreamFailed(message))

    def timed_out(self, timeout: float) -> None:
        """SkyServe's ``stream_timeout_seconds`` (httpx's read timeout in its load balancer): the
        replica sent no response head, or no byte of the body, for ``timeout`` seconds (the
        endpoint's tick checks ``ep.waiting``; ``response_body`` re-arms it on every read)."""
        if self.state == DONE:
            return
        client = self.client
        if not self.resp_started:
            self.fail(UpstreamTimeout(f"replica did not answer within {timeout:g} s"))
        elif client.write_paused:  # the client reads slowly (upstream reads paused): not a stall
            client.ep.arm(self)
        else:
            rid = self.replica.replica_id if self.replica is not None else None
            log.warning("service %s: replica %s sent no byte for %g s mid-response; response cut",
                        client.pool.service, rid, timeout)  # fmt: skip
            self.fail(UpstreamTimeout(f"replica sent no byte for {timeout:g} s"))

    def upstream_write_paused(self, paused: bool) -> None:
        if paused:
            self.client.pause(PAUSE_UPSTREAM)
        else:
            self.client.resume(PAUSE_UPSTREAM)
