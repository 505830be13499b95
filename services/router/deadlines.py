"""Read deadlines of client connections (slowloris): checked by the endpoint's periodic tick."""

from __future__ import annotations

from collections.abc import Iterable

from services.router.client import ClientConnection
from services.router.errors import RequestTimeout
from services.router.flow import DONE


def enforce_read_deadlines(
    clients: Iterable[ClientConnection], now: float, head_timeout: float | None, body_timeout: float | None
) -> None:
    """Answer 408 and close every connection whose request head or body is overdue.

    A head must be whole ``head_timeout`` after its first byte (after the connection opened,
    for the first request); a body may not go ``body_timeout`` without a byte while the router
    is reading it (not while the router itself paused reading: back-pressure is not the
    client's fault; nor while it waits for ``100 Continue``, the deadline then counts from
    it). A head arriving while an earlier response is still in progress waits.
    """
    for c in [c for c in clients if c.in_head or c.cur is not None]:
        if c.closed:
            continue
        if c.in_head:
            if head_timeout is not None and c.active is None and c.head_since < now - head_timeout:
                c.reject(RequestTimeout(f"request head not received within {head_timeout:g} s"))
            continue
        ex = c.cur
        if ex is None or body_timeout is None or c.paused or c.last_read >= now - body_timeout:
            continue
        if ex.expect_continue:  # the client waits for 100 Continue (the replica's, forwarded)
            continue
        error = RequestTimeout(f"request body stalled: no byte received for {body_timeout:g} s")
        if ex is c.active and ex.state != DONE:
            c.cur = None
            c.queue = None
            ex.fail(error, close=True)
        else:
            c.reject(error)
