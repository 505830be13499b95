"""Dead letters end to end: a real service host, relay, NATS and Postgres; the CLI over a live
API lists them and asks for a retry; the host's consumer handles the event again, once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import nats.errors
import pytest

from libs.events.bus import connect
from libs.events.consumer import ConsumerOptions
from libs.events.envelope import RecordedEvent
from libs.events.errors import PermanentError
from libs.events.relay import Relay, RelayOptions
from libs.events.store import Transaction
from libs.events.types import EndpointAssigned, ServiceRequested, service_stream
from libs.runtime.host import ServiceHost, bus_config
from tests.api.conftest import Live
from tests.api.test_cli import cli
from tests.events.helpers import eventually


class Flaky:
    """A handler that refuses every event while ``broken``; else records one effect."""

    def __init__(self) -> None:
        self.broken = True
        self.calls = 0

    async def __call__(self, rec: RecordedEvent, tx: Transaction) -> None:
        self.calls += 1
        if self.broken:
            raise PermanentError(f"cannot handle {rec.event.service} yet")
        await tx.append(service_stream(rec.event.service), [
            EndpointAssigned(service=rec.event.service, endpoint="127.0.0.1:1")
        ])  # fmt: skip


@contextlib.asynccontextmanager
async def running_host(live: Live, handler: Flaky) -> AsyncIterator[ServiceHost]:
    settings = live.api.settings
    host = ServiceHost("dlq", settings)
    host.consumer([ServiceRequested.__name__], handler, options=ConsumerOptions(fetch_timeout=0.2))
    relay_nc = await connect(settings.nats_url, name="relay")
    relay = Relay(live.api.store, relay_nc, bus_config(settings),
                  RelayOptions(name="dlq", poll_interval=0.2))  # fmt: skip
    stop = asyncio.Event()
    started = asyncio.Event()

    async def on_started() -> None:
        started.set()

    tasks = [asyncio.create_task(host.run(on_started)), asyncio.create_task(relay.run(stop))]
    try:
        # A consumer created at start-up begins there: append only once the host is up.
        await asyncio.wait_for(started.wait(), 30)
        yield host
    finally:
        host.stop.set()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await relay_nc.close()
        nc = await connect(settings.nats_url, name="cleanup")
        with contextlib.suppress(nats.errors.Error):
            await nc.jetstream().delete_stream(bus_config(settings).stream)
        await nc.close()


async def listed(live: Live) -> list[dict[str, object]]:
    r = await cli(live, "dead-letters", "list", "--json")
    assert r.exit_code == 0, r.output
    rows: list[dict[str, object]] = json.loads(r.output)
    return rows


async def effects(live: Live, service: str) -> int:
    recs = await live.api.store.read_stream(service_stream(service))
    return sum(isinstance(r.event, EndpointAssigned) for r in recs)


@pytest.mark.timeout(120)
async def test_retry_redelivers_once_and_a_second_retry_has_no_effect(live: Live) -> None:
    store = live.api.store
    handler = Flaky()
    async with running_host(live, handler):
        await store.append(service_stream("web"), [ServiceRequested(service="web")])

        async def dead_lettered() -> bool:
            return len(await store.dead_letters("dlq")) == 1

        await eventually(dead_lettered, within=30)
        (row,) = await listed(live)
        assert row["consumer"] == "dlq" and "cannot handle web yet" in str(row["reason"])
        assert row["retry_state"] is None
        table = await cli(live, "dead-letters", "list")
        assert "cannot handle web yet" in table.output

        handler.broken = False
        r = await cli(live, "dead-letters", "retry", str(row["id"]))
        assert r.exit_code == 0 and "1 dead letter queued" in r.output, r.output

        async def retried() -> bool:
            return (await listed(live))[0]["retry_state"] == "handled"

        await eventually(retried, within=30)
        assert await effects(live, "web") == 1

        # Asking again: the retry already handled it; nothing is re-opened, nothing runs twice.
        calls = handler.calls
        again = await cli(live, "dead-letters", "retry", "--all")
        assert again.exit_code == 0 and "nothing to retry" in again.output, again.output
        assert handler.calls == calls and await effects(live, "web") == 1


@pytest.mark.timeout(120)
async def test_a_retry_of_an_already_handled_position_does_not_run_the_handler(live: Live) -> None:
    store = live.api.store
    handler = Flaky()
    async with running_host(live, handler):
        await store.append(service_stream("api"), [ServiceRequested(service="api")])

        async def dead_lettered() -> bool:
            return len(await store.dead_letters("dlq")) == 1

        await eventually(dead_lettered, within=30)
        (row,) = await listed(live)
        # Meanwhile the position was handled (e.g. a redelivery that succeeded): tracked.
        async with store.transaction() as tx:
            assert await tx.track("dlq", int(str(row["position"])))
        calls = handler.calls
        handler.broken = False
        r = await live.api.http.post("/v1/dead-letters/retry", json={"all": True})
        assert r.status_code == 202 and r.json()["requested"] == [row["id"]], r.text

        async def closed() -> bool:
            return (await listed(live))[0]["retry_state"] == "already handled"

        await eventually(closed, within=30)
        assert handler.calls == calls and await effects(live, "api") == 0


async def test_bad_retry_requests_name_what_is_wrong(live: Live) -> None:
    http = live.api.http
    r = await http.post("/v1/dead-letters/retry", json={})
    assert r.status_code == 422 and "`ids`" in r.json()["message"]
    r = await http.post("/v1/dead-letters/retry", json={"ids": [12345]})
    assert r.status_code == 404 and "12345" in r.json()["message"]
    r = await http.post("/v1/dead-letters/retry", json={"ids": [1], "consumer": "x"})
    assert r.status_code == 422 and "consumer" in r.json()["message"]
    bad = await cli(live, "dead-letters", "retry")
    assert bad.exit_code != 0 and "--all" in bad.output
