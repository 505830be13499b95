"""Fixtures for libs.events tests: NATS connections, a unique JetStream stream per test,
and a dedicated nats-server for tests that kill or restart it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from libs.events.bus import BusConfig, connect, ensure_stream
from libs.servers.nats_server import NatsServer


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await connect(nats_url, name="stratus-tests")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def js(nc: NATS) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture
async def bus(js: JetStreamContext, unique: str) -> AsyncIterator[BusConfig]:
    """A stream and subject prefix of this test's own (deleted afterwards: shared servers)."""
    config = BusConfig(stream=f"T_{unique}", prefix=f"t{unique}", duplicate_window=120.0)
    await ensure_stream(js, config)
    try:
        yield config
    finally:
        with contextlib.suppress(nats.errors.Error):
            await js.delete_stream(config.stream)


@pytest.fixture
def dedicated_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own, which the test may stop, kill and restart."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()
