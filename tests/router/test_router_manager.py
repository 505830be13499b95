"""The Router (many services) and the standalone command."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from router_backend import BackendFactory
from router_client import Conn, request, wait_until

from services.router import EndpointOptions, Router
from services.router.errors import ConfigError, UnknownService

REPO = Path(__file__).resolve().parents[2]


async def test_router_holds_many_services(backends: BackendFactory) -> None:
    a, b = await backends("a"), await backends("b")
    router = Router()
    try:
        pa = await router.add_service("svc-a", 0)
        pb = await router.add_service("svc-b", 0, "round_robin")
        assert pa != pb and router.services() == ["svc-a", "svc-b"] and "svc-a" in router
        assert await router.add_service("svc-a") == pa  # idempotent
        with pytest.raises(ConfigError):
            await router.add_service("svc-a", pb)
        router.pool("svc-a").set_ready(1, a.url)
        router.pool("svc-b").set_ready(7, b.url)
        assert router.pool("svc-b").policy == "round_robin"
        assert (await request(pa, "GET", "/echo")).json()["backend"] == "a"
        assert (await request(pb, "GET", "/echo")).json()["backend"] == "b"
        await request(pb, "GET", "/echo")
        assert router.take_request_counts() == {"svc-a": 1, "svc-b": 2}
        assert router.take_request_counts() == {"svc-a": 0, "svc-b": 0}
        await router.remove_service("svc-b")
        with pytest.raises(ConnectionRefusedError):
            await request(pb, "GET", "/")
        with pytest.raises(UnknownService):
            router.pool("svc-b")
        with pytest.raises(UnknownService):
            await router.remove_service("svc-b")
    finally:
        await router.close()
    with pytest.raises(ConnectionRefusedError):
        await request(pa, "GET", "/")


async def test_router_default_options_apply(backends: BackendFactory) -> None:
    router = Router(options=EndpointOptions(hold_when_empty=True, max_wait=0.2))
    try:
        port = await router.add_service("z")
        r = await request(port, "GET", "/")
        assert r.status == 503 and "after waiting" in r.json()["error"]
    finally:
        await router.close()


async def test_close_cuts_in_flight_and_releases_everything(backends: BackendFactory) -> None:
    b = await backends()
    router = Router()
    port = await router.add_service("s")
    router.pool("s").set_ready(1, b.url)
    ep = router.endpoint("s")
    idle = await Conn.open(port)
    busy = await Conn.open(port)
    await idle.request("GET", "/echo")
    await busy.send(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
    await wait_until(lambda: ep.pool.in_flight(1) == 1, "the hanging request in flight")
    await router.close()
    assert not ep.clients and not ep.tasks
    assert all(not p.conns and not p.idle for p in ep.pool.upstream_pools())
    assert await idle.at_eof() and await busy.at_eof()
    assert await b.wait_disconnect()
    await idle.close()
    await busy.close()


async def test_close_with_grace_lets_requests_finish(backends: BackendFactory) -> None:
    b = await backends()
    router = Router()
    port = await router.add_service("s")
    router.pool("s").set_ready(1, b.url)
    c = await Conn.open(port)
    try:
        await c.send(b"GET /slow?delay=0.2 HTTP/1.1\r\nHost: x\r\n\r\n")
        pool = router.pool("s")
        await wait_until(lambda: pool.in_flight(1) == 1, "the slow request in flight")
        closing = asyncio.ensure_future(router.close(grace=2.0))
        from router_client import read_response

        r = await read_response(c.reader)
        assert r.status == 200 and r.header("connection") == "close"
        await closing
    finally:
        await c.close()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.mark.parametrize("workers", [1, 2])
async def test_standalone_command(backends: BackendFactory, workers: int) -> None:
    b1, b2 = await backends("b1"), await backends("b2")
    port = _free_port()
    env = dict(os.environ, PORT=str(port), BACKENDS=f"127.0.0.1:{b1.port},127.0.0.1:{b2.port}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.router.standalone",
        "--workers",
        str(workers),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(100):  # bounded wait for it to listen (<= 10 s)
            try:
                r = await request(port, "GET", "/echo")
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("standalone router did not start")
        assert r.status == 200
        got = {(await request(port, "GET", "/echo")).json()["backend"] for _ in range(6)}
        assert got == {"b1", "b2"}
        r = await request(port, "GET", "/stream?n=3&delay=0.1")  # on uvloop: streamed too
        assert len(r.chunks) == 3 and r.chunks[-1][0] - r.chunks[0][0] > 0.15
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    assert proc.returncode == 0
