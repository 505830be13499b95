"""What a failure means for the message or loop that hit it: retry later, or give up.

One table for the relay and the consumers, so an outage is treated the same everywhere:

    transient   our TransientError tree, a stream conflict, lost or refused connections, timeouts,
                name resolution, serialization failures: retry with backoff (a consumer naks
                with a delay). Not every ``OSError``: a missing file or a permission refused is
                not an outage and is not retried quietly (it is "unexpected": logged with its
                traceback, retried a few times, then given up).
    permanent   our PermanentError tree (poison, a handler's "never"): term and dead-letter
    unexpected  anything else, i.e. a bug: retried a few times, then treated as permanent
"""

from __future__ import annotations

import socket
from typing import Literal

import asyncpg
import nats.errors

from .errors import ConcurrencyConflict, PermanentError, TransientError

Outcome = Literal["transient", "permanent", "unexpected"]

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    # Re-reading the stream on redelivery resolves it.
    ConcurrencyConflict,
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # also asyncio's and nats.errors.TimeoutError's base
    socket.gaierror,  # a name that does not resolve (yet: DNS during a restart)
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.InsufficientResourcesError,  # too many connections
    asyncpg.TransactionRollbackError,  # serialization failure, deadlock
    nats.errors.Error,
)


def classify(exc: BaseException) -> Outcome:
    if isinstance(exc, PermanentError):
        return "permanent"
    if isinstance(exc, TRANSIENT_ERRORS):
        return "transient"
    return "unexpected"
