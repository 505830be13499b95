"""Retries, proxy-generated errors, timeouts and client disconnects."""

from __future__ import annotations

import asyncio

from router_backend import BackendFactory, EndpointFactory
from router_client import Conn, read_response, request, wait_until


async def test_503_json_when_no_replica_is_ready(endpoint: EndpointFactory) -> None:
    ep = await endpoint(service="llama")
    c = await Conn.open(ep.port)
    try:
        r = await c.request("POST", "/v1/completions", body=b"{}")
        assert r.status == 503
        assert r.header("content-type") == "application/json"
        assert "no ready replica for service llama" in r.json()["error"]
        r = await c.request("GET", "/")  # the connection survives a proxy error
        assert r.status == 503
    finally:
        await c.close()


async def test_refused_replica_is_retried_on_another(
    backends: BackendFactory, endpoint: EndpointFactory, free_port: int
) -> None:
    b = await backends()
    ep = await endpoint(f"http://127.0.0.1:{free_port}", b, policy="round_robin")
    for _ in range(6):
        r = await request(ep.port, "POST", "/echo", body=b"data")
        assert r.status == 200 and r.json()["body"] == "data"
    assert len(b.requests) == 6


async def test_502_json_when_every_attempt_fails(endpoint: EndpointFactory, free_port: int) -> None:
    ep = await endpoint(f"http://127.0.0.1:{free_port}", f"http+unix://%2Ftmp%2Fno-such-{free_port}.sock")
    r = await request(ep.port, "GET", "/")
    assert r.status == 502
    err = r.json()["error"]
    assert "2 attempts" in err and "svc" in err
    assert ep.pool.in_flight(1) == 0 and ep.pool.in_flight(2) == 0


async def test_stale_pooled_connection_is_retried(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b)
    r = await request(ep.port, "GET", "/echo")
    assert r.status == 200
    assert b.connections == 1
    # The replica now closes its kept-alive connection when the next request
    # arrives on it, as if its keep-alive timer fired just as we sent.
    b.drop_reused = 1
    r = await request(ep.port, "POST", "/echo", body=b"replayed body")
    assert r.status == 200
    assert r.json()["body"] == "replayed body"
    assert b.dropped == 1
    assert b.connections == 2  # retried on a fresh connection (the only replica)


async def test_request_sent_on_a_fresh_connection_is_not_retried(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b1, b2 = await backends("b1"), await backends("b2")
    ep = await endpoint(b1, b2)
    r = await request(ep.port, "POST", "/reset", body=b"not idempotent")
    assert r.status == 502
    assert "1 attempt to reach a replica of service svc failed" in r.json()["error"]
    assert len(b1.requests) + len(b2.requests) == 1


async def test_idempotent_request_is_retried_on_another_replica_when_one_dies(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    # A replica killed mid-request closes the connection before answering: a body-less GET
    # goes to the next replica (here every replica resets, so both see it, then 502).
    b1, b2 = await backends("b1"), await backends("b2")
    ep = await endpoint(b1, b2)
    r = await request(ep.port, "GET", "/reset")
    assert r.status == 502
    assert "2 attempts" in r.json()["error"]
    assert len(b1.requests) == 1 and len(b2.requests) == 1


async def test_no_retry_once_the_replica_began_responding(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b1, b2 = await backends("b1"), await backends("b2")
    ep = await endpoint(b1, b2)
    c = await Conn.open(ep.port)
    try:
        await c.send(b"GET /truncate HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await c.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        rest = await asyncio.wait_for(c.reader.read(), 3)  # cut short: the client sees the truncation
        assert rest == b"0123456789"
    finally:
        await c.close()
    assert len(b1.requests) + len(b2.requests) == 1


async def test_504_on_response_header_timeout_and_upstream_is_closed(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b, response_timeout=0.3)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r = await request(ep.port, "GET", "/hang")
    elapsed = loop.time() - t0
    assert r.status == 504 and "error" in r.json()
    assert 0.25 < elapsed < 1.5
    assert await b.wait_disconnect()
    assert b.disconnects == ["/hang"]
    r = await request(ep.port, "GET", "/slow?delay=0.05")  # a quick answer is fine
    assert r.status == 200


async def test_client_gone_while_waiting_cancels_upstream(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    await c.send(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
    await wait_until(lambda: ep.pool.in_flight(1) == 1, "the request in flight")
    await c.close()
    assert await b.wait_disconnect()
    await wait_until(lambda: ep.pool.in_flight(1) == 0, "in-flight count back to 0")
    assert ep.pool.replicas()[0].idle_connections == 0  # not returned to the pool


async def test_client_gone_mid_stream_cancels_upstream(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    await c.send(b"GET /stream?n=50&delay=0.1 HTTP/1.1\r\nHost: x\r\n\r\n")
    await c.reader.readuntil(b"data: 1")
    await c.close()
    assert await b.wait_disconnect()
    assert b.disconnects == ["/stream"]
    await wait_until(lambda: ep.pool.in_flight(1) == 0, "in-flight count back to 0")


async def test_client_gone_mid_request_body_cancels_upstream(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    await c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    await wait_until(lambda: b.open_connections > 0, "the backend to begin reading the body")
    await c.close()
    await wait_until(lambda: b.open_connections == 0, "the backend to see its connection end")
    assert ep.pool.in_flight(1) == 0
    assert b.requests[-1].path == "/upload" and b.requests[-1].body == b""


async def test_error_answer_before_body_closes_connection(endpoint: EndpointFactory) -> None:
    ep = await endpoint()
    c = await Conn.open(ep.port)
    try:
        await c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
        r = await read_response(c.reader)
        assert r.status == 503 and r.header("connection") == "close"
        assert await c.at_eof()
    finally:
        await c.close()
