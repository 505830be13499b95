"""retry_connect: the one connect-with-retry loop (store and bus, at process start-up)."""

from __future__ import annotations

import asyncio

import pytest

from libs.events.errors import BusUnavailable, StoreUnavailable
from libs.events.lifecycle import Backoff, retry_connect
from libs.events.store import EventStore
from libs.servers.ports import free_port


class Flaky:
    """Fails with ``errors`` in turn, then returns "connected"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.called = asyncio.Event()

    async def __call__(self) -> str:
        self.calls += 1
        self.called.set()
        if self.errors:
            raise self.errors.pop(0)
        return "connected"


NO_WAIT = Backoff(0.0, 0.0)


async def test_transient_failures_are_retried_until_it_connects() -> None:
    flaky = Flaky(StoreUnavailable("pg starting"), BusUnavailable("nats starting"))
    assert await retry_connect(flaky, what="t", stop=asyncio.Event(), backoff=NO_WAIT) == "connected"
    assert flaky.calls == 3


async def test_after_the_last_attempt_the_error_is_raised() -> None:
    flaky = Flaky(*(StoreUnavailable(f"down {i}") for i in range(5)))
    with pytest.raises(StoreUnavailable, match="down 2"):
        await retry_connect(flaky, what="t", attempts=3, backoff=NO_WAIT)
    assert flaky.calls == 3


async def test_anything_but_a_transient_error_is_raised_at_once() -> None:
    flaky = Flaky(ValueError("bad DSN"))
    with pytest.raises(ValueError, match="bad DSN"):
        await retry_connect(flaky, what="t", stop=asyncio.Event(), backoff=NO_WAIT)
    assert flaky.calls == 1


async def test_a_stop_request_ends_the_retries() -> None:
    stop = asyncio.Event()
    flaky = Flaky(*(StoreUnavailable("down") for _ in range(1000)))
    task = asyncio.create_task(retry_connect(flaky, what="t", stop=stop, backoff=Backoff(10.0, 10.0)))
    await asyncio.wait_for(flaky.called.wait(), 2.0)
    stop.set()
    assert await asyncio.wait_for(task, 2.0) is None  # the 10 s backoff was cut short
    assert flaky.calls == 1


async def test_a_real_store_that_is_not_there() -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(StoreUnavailable, match="cannot connect to Postgres"):
        await retry_connect(lambda: EventStore.connect(dsn), what="t", attempts=2, backoff=NO_WAIT)
