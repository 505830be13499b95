"""Fixtures for router tests: real HTTP backends and router endpoints on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from router_backend import Backend, BackendFactory, EndpointFactory

from services.router import EndpointOptions, ReplicaPool, ServiceEndpoint


@pytest.fixture
async def backends() -> AsyncIterator[BackendFactory]:
    """``await backends(name)`` starts a TCP backend; all are closed after the test."""
    started: list[Backend] = []

    async def make(name: str = "b", unix_path: str | None = None) -> Backend:
        b = Backend(name)
        if unix_path is not None:
            await b.start_unix(unix_path)
        else:
            await b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        await b.close()


@pytest.fixture
async def endpoint() -> AsyncIterator[EndpointFactory]:
    """``await endpoint(*backends, policy=..., **options)``: a started endpoint over the backends.

    Replica ids are 1, 2, ... in the order given; ``ep.port`` is its port.
    """
    started: list[ServiceEndpoint] = []

    async def make(
        *bs: Backend | str, policy: str = "least_load", service: str = "svc", **opts: Any
    ) -> ServiceEndpoint:
        pool = ReplicaPool(service, policy)
        for i, b in enumerate(bs, start=1):
            pool.set_ready(i, b if isinstance(b, str) else b.url)
        ep = ServiceEndpoint(pool, EndpointOptions(**opts))
        await ep.start("127.0.0.1", 0)
        started.append(ep)
        return ep

    yield make
    for ep in started:
        await ep.close()


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short temporary directory (unix socket paths are limited to ~107 bytes)."""
    d = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


if os.environ.get("STRATUS_TEST_UVLOOP") == "1":  # run this directory on uvloop: STRATUS_TEST_UVLOOP=1

    def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
        import uvloop

        return {"uvloop": uvloop.new_event_loop}
