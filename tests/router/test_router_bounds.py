"""Bounds on clients (issue 8): long request targets, many or large header fields, slowloris
heads, stalled bodies and idle keep-alive connections, each answered (or closed) on real sockets
and never reaching a replica."""

from __future__ import annotations

import asyncio

import pytest
from router_backend import BackendFactory, EndpointFactory
from router_client import Conn, read_response, request, wait_until

from services.router import EndpointOptions
from services.router.errors import ConfigError


async def _refused(port: int, data: bytes) -> tuple[int, str]:
    """Send ``data``; the router's answer (status, error) — it must close the connection."""
    c = await Conn.open(port)
    try:
        await c.send(data)
        r = await read_response(c.reader)
        assert r.header("connection") == "close"
        assert await c.at_eof()
        return r.status, r.json()["error"]
    finally:
        await c.close()


async def test_long_request_target_gets_414(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b, max_url_bytes=1024)
    assert (await request(ep.port, "GET", "/echo?" + "a" * 1000)).status == 200
    status, error = await _refused(ep.port, b"GET /echo?" + b"a" * 1100 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, error) == (414, "request target over 1024 bytes")
    assert len(b.requests) == 1


async def test_too_many_header_fields_get_431(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b, max_headers=20)
    fine = [(f"X-H{i}", "v") for i in range(19)]  # + Host = 20
    assert (await request(ep.port, "GET", "/echo", headers=fine)).status == 200
    head = b"GET /echo HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(20)) + b"\r\n"
    assert await _refused(ep.port, head) == (431, "more than 20 header fields")
    assert len(b.requests) == 1


async def test_large_head_gets_431_even_when_sent_slowly(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b, max_header_bytes=4096)
    c = await Conn.open(ep.port)
    try:
        await c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(10):  # a field that never ends, in pieces
            await c.send(b"v" * 500)
        r = await read_response(c.reader)
        assert r.status == 431 and r.json()["error"] == "request head over 4096 bytes"
        assert await c.at_eof()
    finally:
        await c.close()
    assert b.requests == []


async def test_slowloris_head_gets_408(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b, head_timeout=0.4)
    c = await Conn.open(ep.port)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        await c.send(b"GET /echo HTTP/1.1\r\n")
        answer = asyncio.ensure_future(read_response(c.reader, within=3.0))
        for i in range(30):  # one header field every 50 ms: each read is quick, the head never ends
            if answer.done():
                break
            await c.send(b"X-Drip-%d: v\r\n" % i)
            await asyncio.sleep(0.05)  # the client's pace (what is tested), not a synchronisation
        r = await answer
        elapsed = loop.time() - t0
        assert r.status == 408 and r.json()["error"] == "request head not received within 0.4 s"
        assert 0.3 < elapsed < 1.2, elapsed
        assert await c.at_eof()
    finally:
        await c.close()
    assert b.requests == []


async def test_connection_that_sends_nothing_gets_408(endpoint: EndpointFactory) -> None:
    ep = await endpoint(head_timeout=0.3, client_idle_timeout=60)
    c = await Conn.open(ep.port)
    try:
        r = await read_response(c.reader, within=3.0)
        assert r.status == 408 and "request head not received" in r.json()["error"]
        assert await c.at_eof()
    finally:
        await c.close()


async def test_stalled_body_gets_408_and_the_replica_connection_closes(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b, body_timeout=0.3)
    c = await Conn.open(ep.port)
    try:
        await c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
        r = await read_response(c.reader, within=3.0)
        assert r.status == 408
        assert r.json()["error"] == "request body stalled: no byte received for 0.3 s"
        assert await c.at_eof()
    finally:
        await c.close()
    # the half-sent request's upstream connection is closed, not pooled
    await wait_until(lambda: b.open_connections == 0, "the backend to see its connection end")
    assert ep.pool.in_flight(1) == 0


async def test_slow_but_steady_body_is_fine(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b, body_timeout=0.4, head_timeout=0.4)
    c = await Conn.open(ep.port)
    try:
        await c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        for _ in range(10):  # 1 s in all, but never 0.4 s without a byte
            await c.send(b"x")
            await asyncio.sleep(0.1)  # the client's pace, not a synchronisation
        r = await read_response(c.reader)
        assert r.status == 200
    finally:
        await c.close()
    assert b.requests[-1].body == b"x" * 10


async def test_idle_keep_alive_connection_is_closed(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b, client_idle_timeout=0.3)
    c = await Conn.open(ep.port)
    try:
        assert (await c.request("GET", "/echo")).status == 200
        assert await c.at_eof(within=2.0)  # closed silently: nothing was asked
    finally:
        await c.close()


def test_bounds_are_validated() -> None:
    with pytest.raises(ConfigError, match="head_timeout"):
        EndpointOptions(head_timeout=0)
    with pytest.raises(ConfigError, match="max_headers"):
        EndpointOptions(max_headers=0)


async def test_body_deadline_waits_for_100_continue(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    """A client sending ``Expect: 100-continue`` to a service scaled to zero waits (held) for the
    replica's 100 Continue: that wait is not a stalled body."""
    b = await backends()
    ep = await endpoint(hold_when_empty=True, max_wait=10.0, body_timeout=0.3)
    c = await Conn.open(ep.port)
    try:
        await c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        with pytest.raises(TimeoutError):  # held past the body deadline: no 408
            await read_response(c.reader, within=1.0)
        ep.pool.set_ready(1, b.url)
        async with asyncio.timeout(5):
            assert (await c.reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
        await c.send(b"body")
        r = await read_response(c.reader)
        assert r.status == 200 and r.json()["body"] == "body"
    finally:
        await c.close()
