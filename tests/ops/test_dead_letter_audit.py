"""Dead-letter retries are audited in the event log: who asked, which ids, and each outcome, on
stream ``dead-letters`` (a real host, relay, NATS and Postgres; the CLI over a live API)."""

from __future__ import annotations

import json

import pytest

from libs.events.redelivery import DEAD_LETTERS_STREAM
from libs.events.types import DeadLetterRetried, DeadLetterRetryRequested, ServiceRequested, service_stream
from tests.api.conftest import Live
from tests.api.test_cli import cli
from tests.events.helpers import eventually

from .test_dead_letters import Flaky, listed, running_host


@pytest.mark.timeout(120)
async def test_each_retry_and_its_outcome_are_events_with_who_asked(live: Live) -> None:
    store = live.api.store
    handler = Flaky()
    async with running_host(live, handler):
        await store.append(service_stream("audited"), [ServiceRequested(service="audited")])

        async def dead_lettered() -> bool:
            return len(await store.dead_letters("dlq")) == 1

        await eventually(dead_lettered, within=30)
        (row,) = await listed(live)
        handler.broken = False
        r = await cli(live, "dead-letters", "retry", str(row["id"]))
        assert r.exit_code == 0, r.output

        async def retried() -> bool:
            return (await listed(live))[0]["retry_state"] == "handled"

        await eventually(retried, within=30)
        who = (await listed(live))[0]["retry_requested_by"]
        assert isinstance(who, str) and who

        # Asking again opens nothing (a retry handled it already): no event for that either.
        again = await cli(live, "dead-letters", "retry", "--all")
        assert again.exit_code == 0 and "nothing to retry" in again.output

    events = [rec.event for rec in await store.read_stream(DEAD_LETTERS_STREAM)]
    dl_id, position = int(str(row["id"])), int(str(row["position"]))
    assert events == [
        DeadLetterRetryRequested(service="", dead_letter_ids=[dl_id], principal=who),
        DeadLetterRetried(
            service="",
            dead_letter_id=dl_id,
            consumer="dlq",
            position=position,
            outcome="handled",
            principal=who,
        ),
    ]
    # `stratus events` shows them, with who asked.
    shown = await cli(live, "events", "--type", "DeadLetterRetryRequested", "--json")
    assert shown.exit_code == 0, shown.output
    assert (
        who in shown.output and json.loads(shown.output.splitlines()[0])["type"] == "DeadLetterRetryRequested"
    )
