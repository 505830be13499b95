"""Hold-when-empty: requests wait for a replica instead of failing (scale-to-zero)."""

from __future__ import annotations

import asyncio

from router_backend import BackendFactory, EndpointFactory
from router_client import Conn, read_response, request, wait_until


async def test_held_requests_are_released_when_a_replica_becomes_ready(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    calls: list[str] = []
    ep = await endpoint(hold_when_empty=True, max_wait=5.0, on_hold=calls.append, service="zero")
    conns = [await Conn.open(ep.port) for _ in range(3)]
    try:
        for i, c in enumerate(conns):
            await c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody")
            await wait_until(lambda n=i + 1: ep.held_count() == n, f"{i + 1} requests held")
        assert calls == ["zero"]  # once, not per request
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        ep.pool.set_ready(1, b.url)
        for c in conns:
            r = await read_response(c.reader)
            assert r.status == 200 and r.json()["body"] == "body"
        assert loop.time() - t0 < 0.5
        assert ep.held_count() == 0
    finally:
        for c in conns:
            await c.close()


async def test_async_on_hold_callback(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep_box = []

    async def scale_up(service: str) -> None:
        await asyncio.sleep(0.1)
        ep_box[0].pool.set_ready(1, b.url)

    ep = await endpoint(hold_when_empty=True, max_wait=5.0, on_hold=scale_up)
    ep_box.append(ep)
    r = await request(ep.port, "GET", "/echo")
    assert r.status == 200


async def test_hold_queue_full_and_wait_expiry(endpoint: EndpointFactory) -> None:
    ep = await endpoint(hold_when_empty=True, max_queue=1, max_wait=0.3, service="zero")
    loop = asyncio.get_running_loop()
    held = await Conn.open(ep.port)
    try:
        t0 = loop.time()
        await held.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await wait_until(lambda: ep.held_count() == 1, "the first request held")
        r = await request(ep.port, "GET", "/")  # queue full: at once
        assert r.status == 503 and "full" in r.json()["error"]
        r = await read_response(held.reader)  # waited max_wait, then 503
        assert r.status == 503
        assert "no ready replica for service zero" in r.json()["error"]
        assert 0.25 < loop.time() - t0 < 1.5
    finally:
        await held.close()


async def test_held_client_going_away_leaves_the_queue(endpoint: EndpointFactory) -> None:
    ep = await endpoint(hold_when_empty=True, max_wait=5.0)
    c = await Conn.open(ep.port)
    await c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await wait_until(lambda: ep.held_count() == 1, "the request held")
    await c.close()
    await wait_until(lambda: ep.held_count() == 0, "the held request gone with its client")


async def test_hold_is_off_by_default(endpoint: EndpointFactory) -> None:
    ep = await endpoint()
    r = await request(ep.port, "GET", "/")
    assert r.status == 503


async def test_large_held_body_is_paused_then_forwarded(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    import hashlib

    b = await backends()
    ep = await endpoint(hold_when_empty=True, max_wait=5.0)
    data = bytes(range(256)) * 8192  # 2 MiB: more than the router buffers while holding
    c = await Conn.open(ep.port)
    try:
        c.writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
        await wait_until(lambda: ep.held_count() == 1, "the upload held")
        # the router stops reading past what it buffers for a held request
        await wait_until(lambda: any(cl.paused for cl in ep.clients), "reading from the client paused")
        ep.pool.set_ready(1, b.url)
        r = await read_response(c.reader, within=10)
        assert r.json() == {"received": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    finally:
        await c.close()
