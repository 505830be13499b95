"""HTTP/1.1 behaviour of the proxy against real local backends."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from router_backend import BackendFactory, EndpointFactory
from router_client import Conn, read_response, request, wait_until


async def test_get_forwards_headers_and_strips_hop_by_hop(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends("one")
    ep = await endpoint(b)
    r = await request(
        ep.port,
        "GET",
        "/echo?x=1",
        headers=[
            ("X-Custom", "kept"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "dropped"),
            ("Keep-Alive", "timeout=3"),
            ("TE", "trailers"),
            ("Proxy-Connection", "keep-alive"),
            ("Upgrade-Insecure-Requests", "1"),
            ("X-Forwarded-For", "10.0.0.1"),
        ],
    )
    assert r.status == 200
    got = b.requests[0]
    assert got.target == "/echo?x=1"
    assert got.version == "HTTP/1.1"
    assert got.header("host") == "test.local"  # Host is kept as the client sent it
    assert got.header("x-custom") == "kept"
    assert got.header("upgrade-insecure-requests") == "1"  # not hop-by-hop despite the prefix
    assert got.header("x-forwarded-for") == "10.0.0.1, 127.0.0.1"
    assert not got.header_names() & {"connection", "keep-alive", "te", "proxy-connection", "x-private"}
    # response side: the backend's hop-by-hop fields do not reach the client
    assert r.header("x-end") == "1"
    assert r.header("content-type") == "application/json"
    assert not r.header_names() & {"x-hop", "keep-alive", "connection"}
    assert r.json()["backend"] == "one"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE", "PROPFIND"])
async def test_every_method(backends: BackendFactory, endpoint: EndpointFactory, method: str) -> None:
    b = await backends()
    ep = await endpoint(b)
    body = b"payload" if method in ("POST", "PUT", "PATCH") else None
    r = await request(ep.port, method, "/echo", body=body)
    assert r.status == 200
    assert r.json()["method"] == method
    assert r.json()["body"] == (body or b"").decode()


async def test_head_has_no_body_and_connection_stays_usable(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    try:
        r = await c.request("HEAD", "/echo")
        assert r.status == 200
        assert int(r.header("content-length") or 0) > 0
        r2 = await c.request("GET", "/echo")  # same client connection, nothing left over
        assert r2.status == 200 and r2.json()["method"] == "GET"
        r3 = await c.request("HEAD", "/stream?n=2&delay=0")
        assert r3.status == 200
        r4 = await c.request("GET", "/echo")
        assert r4.json()["method"] == "GET"
    finally:
        await c.close()


async def test_request_body_content_length_and_chunked(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b)
    data = bytes(range(256)) * 100
    r = await request(ep.port, "POST", "/upload", body=data)
    assert r.json() == {"received": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert b.requests[-1].header("content-length") == str(len(data))

    chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    r = await request(ep.port, "POST", "/echo", headers=[("Transfer-Encoding", "chunked")], body=chunked)
    assert r.json()["body"] == "hello world"
    assert b.requests[-1].header("transfer-encoding") == "chunked"
    assert b.requests[-1].header("content-length") is None


async def test_request_body_is_streamed_to_the_backend(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b)
    loop = asyncio.get_running_loop()
    c = await Conn.open(ep.port)
    try:
        await c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent_at = []
        for i in range(4):
            if i:
                await asyncio.sleep(0.2)
            sent_at.append(loop.time())
            await c.send(b"4\r\npart\r\n")
        await c.send(b"0\r\n\r\n")
        r = await read_response(c.reader)
        assert r.json()["received"] == 16
    finally:
        await c.close()
    arrivals = [t for t, _ in b.requests[-1].body_arrivals]
    assert len(arrivals) == 4
    # the first piece reached the backend before the client sent the last one
    assert arrivals[0] < sent_at[-1] - 0.4


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
async def test_chunked_response_streams_chunk_by_chunk(
    backends: BackendFactory, endpoint: EndpointFactory, version: str
) -> None:
    b = await backends()
    ep = await endpoint(b)
    loop = asyncio.get_running_loop()
    c = await Conn.open(ep.port)
    try:
        t0 = loop.time()
        r = await c.request("GET", "/stream?n=5&delay=0.2", version=version)
    finally:
        await c.close()
    assert r.status == 200
    assert r.header("content-type") == "text/event-stream"
    assert r.body == b"".join(f"data: {i}\n\n".encode() for i in range(5))
    first, last = r.chunks[0][0] - t0, r.chunks[-1][0] - t0
    assert first < 0.15, first
    assert last > 0.7, last
    assert len(r.chunks) >= 4
    if version == "HTTP/1.1":
        assert r.framing == "chunked"
    else:  # no chunked coding for HTTP/1.0: raw bytes, then close
        assert r.framing == "close"


async def test_close_delimited_response(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b)
    loop = asyncio.get_running_loop()
    c = await Conn.open(ep.port)
    try:
        t0 = loop.time()
        r = await c.request("GET", "/until-close?n=3&delay=0.2")
        assert r.framing == "chunked"  # re-framed for the HTTP/1.1 client, whose connection stays open
        assert r.body == b"piece 0\npiece 1\npiece 2\n"
        assert r.chunks[0][0] - t0 < 0.15 and r.chunks[-1][0] - t0 > 0.35
        r2 = await c.request("GET", "/echo")
        assert r2.status == 200
    finally:
        await c.close()
    r = await request(ep.port, "GET", "/until-close?n=2&delay=0", version="HTTP/1.0")
    assert r.framing == "close" and r.body == b"piece 0\npiece 1\n"


async def test_keep_alive_on_both_sides(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    try:
        for _ in range(20):
            r = await c.request("GET", "/echo")
            assert r.status == 200 and r.header("connection") is None
    finally:
        await c.close()
    # one upstream connection served all of them, in order
    assert b.connections == 1
    assert [q.index for q in b.requests] == list(range(20))
    c2 = await Conn.open(ep.port)
    try:
        await c2.request("GET", "/echo")
    finally:
        await c2.close()
    assert b.connections == 1  # reused from the pool by another client


async def test_http10_client(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    try:
        r = await c.request("GET", "/echo", version="HTTP/1.0", host=None)
        assert r.status == 200
        assert await c.at_eof()  # HTTP/1.0 without keep-alive: closed after the response
    finally:
        await c.close()
    got = b.requests[-1]
    assert got.version == "HTTP/1.1"
    assert got.header("host") == f"127.0.0.1:{b.port}"  # no Host from the client: the replica's
    c = await Conn.open(ep.port)
    try:
        r = await c.request("GET", "/echo", version="HTTP/1.0", headers=[("Connection", "keep-alive")])
        assert r.header("connection") == "keep-alive"
        r = await c.request("GET", "/echo", version="HTTP/1.0", headers=[("Connection", "keep-alive")])
        assert r.status == 200
    finally:
        await c.close()


async def test_connection_close_from_client(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    try:
        r = await c.request("GET", "/echo", headers=[("Connection", "close")])
        assert r.header("connection") == "close"
        assert await c.at_eof()
    finally:
        await c.close()
    assert b.requests[-1].header("connection") is None  # the upstream connection is kept
    await request(ep.port, "GET", "/echo")
    assert b.connections == 1


async def test_connection_close_from_backend_is_not_passed_on(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    try:
        r = await c.request("GET", "/close")
        assert r.status == 200 and r.header("connection") is None
        r = await c.request("GET", "/echo")  # client connection still open; a new upstream one
        assert r.status == 200
    finally:
        await c.close()
    assert b.connections == 2


async def test_large_bodies_both_ways(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b)
    n = 8 * 1024 * 1024
    r = await request(ep.port, "GET", f"/bytes?n={n}", within=20)
    assert len(r.body) == n and r.body[:5] == bytes(range(5))
    data = b"x" * n
    r = await request(ep.port, "POST", "/upload", body=data, within=20)
    assert r.json()["received"] == n


async def test_slow_reading_client_gets_everything(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b)
    n = 4 * 1024 * 1024
    c = await Conn.open(ep.port)
    try:
        await c.send(b"GET /bytes?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
        await asyncio.sleep(0.3)  # let buffers fill: the router must pause the backend, not buffer it all
        r = await read_response(c.reader, within=20)
        assert len(r.body) == n
    finally:
        await c.close()


async def test_pipelined_requests_answered_in_order(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    try:
        await c.send(
            b"GET /slow?delay=0.1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /echo?third HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        r1 = await read_response(c.reader)
        r2 = await read_response(c.reader)
        r3 = await read_response(c.reader)
    finally:
        await c.close()
    assert r1.json()["target"] == "/slow?delay=0.1"
    assert r2.json()["body"] == "abc"
    assert r3.json()["target"] == "/echo?third"


async def test_expect_100_continue(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    try:
        await c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        line = await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 2)
        assert line.startswith(b"HTTP/1.1 100")
        await c.send(b"hello")
        r = await read_response(c.reader)
        assert r.json()["body"] == "hello"
    finally:
        await c.close()


async def test_status_without_body(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    try:
        r = await c.request("GET", "/status?code=204")
        assert r.status == 204 and r.body == b""
        r = await c.request("GET", "/status?code=404")
        assert r.status == 404
        r = await c.request("GET", "/echo")
        assert r.status == 200
    finally:
        await c.close()


async def test_invalid_request_gets_400(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    try:
        await c.send(b"THIS IS NOT HTTP\r\n\r\n")
        r = await read_response(c.reader)
        assert r.status == 400 and "error" in r.json()
        assert await c.at_eof()
    finally:
        await c.close()
    assert b.requests == []


async def test_oversized_head_gets_431(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b, max_header_bytes=4096)
    c = await Conn.open(ep.port)
    try:
        await c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10000)
        r = await read_response(c.reader)
        assert r.status == 431
    finally:
        await c.close()


async def test_websocket_style_upgrade_is_served_as_plain_request(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    try:
        r = await c.request("GET", "/echo", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")])
        assert r.status == 200
        assert "upgrade" not in b.requests[-1].header_names()
        r = await c.request("GET", "/echo?after")
        assert r.json()["target"] == "/echo?after"
        await c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        r = await read_response(c.reader)
        assert r.status == 501
    finally:
        await c.close()


async def test_unix_socket_upstream(
    backends: BackendFactory, endpoint: EndpointFactory, short_tmp: str
) -> None:
    from urllib.parse import quote

    path = f"{short_tmp}/replica.sock"
    b = await backends("unix", unix_path=path)
    ep = await endpoint(f"http+unix://{quote(path, safe='')}")
    r = await request(ep.port, "POST", "/echo", body=b"over unix")
    assert r.status == 200 and r.json()["body"] == "over unix"
    r = await request(ep.port, "GET", "/stream?n=3&delay=0")
    assert r.body.count(b"data:") == 3
    r = await request(ep.port, "GET", "/echo", version="HTTP/1.0", host=None)
    assert b.requests[-1].header("host") == "localhost"


async def test_idle_connections_are_closed(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b, upstream_idle_timeout=0.2, client_idle_timeout=0.4)
    c = await Conn.open(ep.port)
    try:
        assert (await c.request("GET", "/echo")).status == 200
        # the idle pooled upstream connection is closed after upstream_idle_timeout
        await wait_until(lambda: b.open_connections == 0, "the idle upstream connection closed", within=2.0)
        assert await c.at_eof(1.0)  # and so was the idle client connection
    finally:
        await c.close()
    assert (await request(ep.port, "GET", "/echo")).status == 200
