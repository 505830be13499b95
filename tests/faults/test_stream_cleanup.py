"""Test stacks delete their own JetStream stream on teardown (tests/conftest.py): on a
long-lived NATS, streams left behind keep their storage reservation until JetStream is full."""

from __future__ import annotations

import nats.js.errors
import pytest

from libs.events.bus import BusConfig, connect, ensure_stream
from libs.runtime.host import bus_config
from libs.runtime.settings import Settings
from tests.conftest import delete_streams, stack_stream


def test_the_stream_named_is_the_one_a_stack_makes() -> None:
    assert stack_stream("tabc") == bus_config(Settings(bus_prefix="tabc")).stream == "STRATUS_TABC"


async def test_delete_streams_removes_a_stacks_stream_and_ignores_a_missing_one(
    nats_url: str, unique: str
) -> None:
    nc = await connect(nats_url, name="stream-cleanup")
    try:
        js = nc.jetstream()
        name = stack_stream(f"t{unique}")
        await ensure_stream(js, BusConfig(stream=name, prefix=f"t{unique}", max_bytes=1024 * 1024))
        await js.stream_info(name)  # it exists
        delete_streams(nats_url, [f"{name}_NEVER_MADE", name])  # a missing one is no error
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.stream_info(name)
    finally:
        await nc.close()


def test_delete_streams_is_bounded_when_nats_is_unreachable() -> None:
    import time

    from libs.servers.ports import free_port

    started = time.monotonic()
    delete_streams(f"nats://127.0.0.1:{free_port()}", ["STRATUS_TX"], timeout=2.0)  # nothing listens
    assert time.monotonic() - started < 5
