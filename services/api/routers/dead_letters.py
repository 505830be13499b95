"""``/v1/dead-letters``: the messages consumers gave up on, and asking them to retry.

A retry is handled by the consumer's own service (``libs.events.redelivery``): it reads the
event from the log and runs its handler with the tracking row, so a retry of a message that was
handled in the meantime has no second effect. ``GET`` shows each retry's state and outcome.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from libs.events.redelivery import list_dead_letters, request_retry, retry_state

from ..auth import Caller
from ..deps import ApiDeps
from ..errors import Invalid, NotFound
from .services import ERRORS


class DeadLetterOut(BaseModel):
    id: int
    consumer: str
    position: int | None
    event_id: str | None
    subject: str
    reason: str
    deliveries: int
    recorded_at: datetime
    retry_state: str | None = Field(
        description="None: never retried; pending; handled; already handled; failed: ...; unreadable: ..."
    )
    retry_requested_at: datetime | None = None
    retry_requested_by: str | None = None
    retry_done_at: datetime | None = None


class DeadLetterListOut(BaseModel):
    dead_letters: list[DeadLetterOut]


class RetryRequest(BaseModel):
    ids: list[int] | None = Field(default=None, description="Dead letter IDs to retry.")
    all: bool = Field(default=False, description="Every dead letter not yet handled by a retry.")
    consumer: str | None = Field(default=None, description="With `all`: only this consumer's.")


class RetryOut(BaseModel):
    message: str
    requested: list[int]


def _out(r: dict[str, Any]) -> DeadLetterOut:
    return DeadLetterOut(
        id=r["id"], consumer=r["consumer"], position=r["position"], event_id=r["event_id"],
        subject=r["subject"], reason=r["reason"], deliveries=r["deliveries"],
        recorded_at=r["recorded_at"], retry_state=retry_state(r),
        retry_requested_at=r["requested_at"], retry_requested_by=r["requested_by"] or None,
        retry_done_at=r["done_at"],
    )  # fmt: skip


def build(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"], responses=ERRORS)
    pool = deps.store.pool

    @router.get("", summary="Messages consumers gave up on, with the reason and any retry's outcome")
    async def list_all(
        consumer: Annotated[str | None, Query(description="Only this consumer's.")] = None,
    ) -> DeadLetterListOut:
        rows = await list_dead_letters(pool, consumer)
        return DeadLetterListOut(dead_letters=[_out(r) for r in rows])

    @router.post(
        "/retry", status_code=202, summary="Ask the consumers to handle these dead letters again (idempotent)"
    )
    async def retry(body: RetryRequest, caller: Caller) -> RetryOut:
        if bool(body.ids) == body.all:
            raise Invalid("give `ids` (a non-empty list) or `all: true`, not both")
        if body.consumer is not None and not body.all:
            raise Invalid("`consumer` only narrows `all: true`; with `ids`, leave it out")
        result = await request_retry(
            pool, ids=None if body.all else body.ids, consumer=body.consumer, requested_by=caller.label
        )
        if result.unknown:
            raise NotFound(
                f"no dead letter with id {', '.join(map(str, result.unknown))}; "
                "`stratus dead-letters list` shows them"
            )
        n = len(result.requested)
        message = (
            f"{n} dead letter{'s' if n != 1 else ''} queued for retry by their consumers"
            if n
            else "nothing to retry (a retry already handled them)"
        )
        return RetryOut(message=message, requested=result.requested)

    return router
