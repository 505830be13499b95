"""Retrying dead letters: an operator asks, the consumer that gave up handles the event again.

A retry request is a row of ``stratus_dead_letter_retries`` (one per dead letter; asking again
re-opens it). Each service host polls for its consumers' open requests and, for each, reads the
event from the log (Postgres is the source of truth; the bus may have dropped the message) and
runs the consumer's handler in ONE transaction with the tracking row ``(consumer, position)``,
exactly as a delivery would. Re-delivery is therefore idempotent: if the position is already
tracked (an earlier retry, or a redelivery that succeeded) the handler is not run again and the
request is closed as ``already handled``.

Outcomes recorded on the request: ``handled``, ``already handled``, ``failed: <reason>`` (a
permanent or unexpected error: the dead letter stays, and may be retried again), or
``unreadable: <reason>`` (no such event, or this code cannot decode it). A transient error
leaves the request open for the next poll.

The audit trail is in the log, on stream ``dead-letters``: each request appends a
``DeadLetterRetryRequested`` (the ids it opened and who asked) and each settled retry a
``DeadLetterRetried`` (its outcome and who asked), in the transaction that writes the row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from .consumer import Handler
from .errors import EventDecodeError, UnknownEventType
from .outcomes import TRANSIENT_ERRORS, classify
from .schema import DEAD_LETTER_RETRIES_DDL, apply_ddl
from .store import EventStore, StreamAppend, append_on
from .types import DeadLetterRetried, DeadLetterRetryRequested

log = logging.getLogger(__name__)

_LOCK_KEY = 0x5354524454_4C52  # advisory lock serializing the schema's creation

SCHEMA = DEAD_LETTER_RETRIES_DDL  # the one text, in libs.events.schema's migration list
DEAD_LETTERS_STREAM = "dead-letters"  # the retries' audit events


async def ensure_schema(pool: asyncpg.Pool) -> None:
    if await pool.fetchval("SELECT to_regclass('stratus_dead_letter_retries') IS NOT NULL"):
        return
    await apply_ddl(pool, _LOCK_KEY, SCHEMA)


@dataclass(frozen=True, slots=True)
class RetryRequested:
    requested: list[int]  # dead letter ids (re)opened for retry (not those a retry already handled)
    unknown: list[int]  # ids that name no dead letter


async def request_retry(
    pool: asyncpg.Pool, *, ids: Iterable[int] | None = None, consumer: str | None = None,
    requested_by: str = "",
) -> RetryRequested:  # fmt: skip
    """Open a retry for each of ``ids`` (or, with ``ids=None``, every dead letter of ``consumer``
    or of all consumers not yet handled by a retry). Asking twice is harmless."""
    await ensure_schema(pool)
    async with pool.acquire() as conn, conn.transaction():
        if ids is None:
            rows = await conn.fetch(
                "SELECT d.id FROM stratus_dead_letters d LEFT JOIN stratus_dead_letter_retries r"
                " ON r.dead_letter_id = d.id WHERE ($1::text IS NULL OR d.consumer = $1)"
                " AND (r.outcome IS NULL OR r.outcome NOT IN ('handled', 'already handled'))"
                " ORDER BY d.id",
                consumer,
            )
            wanted = [r[0] for r in rows]
            unknown: list[int] = []
        else:
            asked = sorted(set(ids))
            rows = await conn.fetch("SELECT id FROM stratus_dead_letters WHERE id = ANY($1::bigint[])", asked)
            wanted = sorted(r[0] for r in rows)
            unknown = [i for i in asked if i not in set(wanted)]
        opened = await conn.fetch(
            "INSERT INTO stratus_dead_letter_retries (dead_letter_id, requested_by)"
            " SELECT unnest($1::bigint[]), $2"
            " ON CONFLICT (dead_letter_id) DO UPDATE SET requested_at = now(), requested_by = $2,"
            " done_at = NULL, outcome = ''"
            " WHERE stratus_dead_letter_retries.outcome NOT IN ('handled', 'already handled')"
            " RETURNING dead_letter_id",
            wanted, requested_by,
        )  # fmt: skip
        requested = sorted(r[0] for r in opened)
        if requested:
            event = DeadLetterRetryRequested(
                service="", dead_letter_ids=requested, consumer=consumer or "", principal=requested_by
            )
            await append_on(conn, [StreamAppend(DEAD_LETTERS_STREAM, [event])])
    return RetryRequested(requested, unknown)


async def list_dead_letters(pool: asyncpg.Pool, consumer: str | None = None) -> list[dict[str, Any]]:
    """Every dead letter (oldest first) with the state of its retry, if one was asked for."""
    await ensure_schema(pool)
    rows = await pool.fetch(
        "SELECT d.id, d.consumer, d.position, d.event_id, d.subject, d.reason, d.deliveries,"
        " d.recorded_at, r.requested_at, r.requested_by, r.done_at, r.outcome, r.attempts"
        " FROM stratus_dead_letters d LEFT JOIN stratus_dead_letter_retries r ON r.dead_letter_id = d.id"
        " WHERE $1::text IS NULL OR d.consumer = $1 ORDER BY d.id",
        consumer,
    )
    return [dict(r) for r in rows]


async def open_dead_letters(pool: asyncpg.Pool, consumer: str) -> int:
    """Dead letters of ``consumer`` that no retry has handled (a metrics gauge)."""
    await ensure_schema(pool)
    n = await pool.fetchval(
        "SELECT count(*) FROM stratus_dead_letters d LEFT JOIN stratus_dead_letter_retries r"
        " ON r.dead_letter_id = d.id WHERE d.consumer = $1"
        " AND (r.outcome IS NULL OR r.outcome NOT IN ('handled', 'already handled'))",
        consumer,
    )
    return int(n)


def retry_state(row: dict[str, Any]) -> str | None:
    if row.get("requested_at") is None:
        return None
    return str(row["outcome"]) if row.get("done_at") is not None else "pending"


class Redeliverer:
    """Handles open retry requests of one tracked consumer (``poll`` from a host loop)."""

    def __init__(
        self, store: Callable[[], EventStore], consumer: str, handler: Handler, *, batch: int = 50
    ) -> None:
        self._store = store  # a getter: the host connects after registering its consumers
        self.consumer = consumer
        self.handler = handler
        self.batch = batch
        self._schema = False

    @property
    def store(self) -> EventStore:
        return self._store()

    async def poll(self) -> None:
        await self.settle()

    async def settle(self) -> int:
        """Settle up to ``batch`` open requests; returns how many were closed."""
        if not self._schema:
            await ensure_schema(self.store.pool)
            self._schema = True
        closed = 0
        for _ in range(self.batch):
            settled = await self._one()
            if settled is None:
                break
            closed += settled
        return closed

    async def _one(self) -> int | None:
        """One request: 1 if closed, 0 if left open (transient), None if there was none."""
        async with self.store.transaction() as tx:
            row = await tx.conn.fetchrow(
                "SELECT r.dead_letter_id, d.position, r.requested_by FROM stratus_dead_letter_retries r"
                " JOIN stratus_dead_letters d ON d.id = r.dead_letter_id"
                " WHERE r.done_at IS NULL AND d.consumer = $1 ORDER BY r.requested_at, r.dead_letter_id"
                " LIMIT 1 FOR UPDATE OF r SKIP LOCKED",
                self.consumer,
            )
            if row is None:
                return None
            dl_id, position = row[0], row[1]
            outcome = await self._redeliver(tx, position)
            if outcome is None:
                await tx.conn.execute(
                    "UPDATE stratus_dead_letter_retries SET attempts = attempts + 1"
                    " WHERE dead_letter_id = $1",
                    dl_id,
                )
                return 0
            await tx.conn.execute(
                "UPDATE stratus_dead_letter_retries SET done_at = now(), outcome = $2,"
                " attempts = attempts + 1 WHERE dead_letter_id = $1",
                dl_id, outcome,
            )  # fmt: skip
            await tx.append(DEAD_LETTERS_STREAM, [DeadLetterRetried(
                service="", dead_letter_id=dl_id, consumer=self.consumer, position=position, outcome=outcome,
                principal=row[2] or "",
            )])  # fmt: skip
            log.info("consumer %s: dead letter %d retried: %s", self.consumer, dl_id, outcome)
            return 1

    async def _redeliver(self, tx: Any, position: int | None) -> str | None:
        if position is None:
            return "unreadable: the dead letter has no log position"
        page = await self.store.read_page(after=position - 1, limit=1, until=position)
        if page.undecodable:
            err: UnknownEventType | EventDecodeError = page.undecodable[0].error
            return f"unreadable: {err}"
        if not page.records or page.records[0].position != position:
            return f"unreadable: no event at position {position}"
        rec = page.records[0]
        try:
            async with tx.conn.transaction():  # a savepoint: a failing handler leaves nothing behind
                if not await tx.track(self.consumer, position):
                    return "already handled"
                await self.handler(rec, tx)
        except TRANSIENT_ERRORS as exc:
            log.info("consumer %s: retry of position %d: %r; later", self.consumer, position, exc)
            return None
        except Exception as exc:  # recorded on the request: the operator sees it, may retry again
            kind = classify(exc)
            return f"failed: {type(exc).__name__}: {exc} ({kind})"
        return "handled"
