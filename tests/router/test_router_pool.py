"""Policies and the runtime-updatable replica set, driven through real requests."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from router_backend import BackendFactory, EndpointFactory
from router_client import Conn, read_response, request, wait_until

from services.router import ReplicaPool
from services.router.errors import InvalidUpstreamURL, UnknownPolicy


async def served_by(port: int, n: int, target: str = "/echo") -> list[str]:
    c = await Conn.open(port)
    try:
        out = []
        for _ in range(n):
            r = await c.request("GET", target)
            out.append(r.json()["backend"] if r.status == 200 else str(r.status))
        return out
    finally:
        await c.close()


async def test_round_robin_alternates(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b1, b2, b3 = await backends("b1"), await backends("b2"), await backends("b3")
    ep = await endpoint(b1, b2, b3, policy="round_robin")
    got = await served_by(ep.port, 9)
    assert got == ["b1", "b2", "b3"] * 3


async def test_least_load_ties_round_robin(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b1, b2 = await backends("b1"), await backends("b2")
    ep = await endpoint(b1, b2)
    assert ep.pool.policy == "least_load"
    got = await served_by(ep.port, 10)  # sequential: always a tie at 0 in flight
    assert Counter(got) == {"b1": 5, "b2": 5}
    assert got[:2] in (["b1", "b2"], ["b2", "b1"])


async def test_least_load_prefers_fewest_in_flight(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b1, b2 = await backends("b1"), await backends("b2")
    ep = await endpoint(b1, b2)
    slow = []
    for _ in range(2):  # two slow requests: one on each replica (tie -> round robin)
        c = await Conn.open(ep.port)
        await c.send(b"GET /slow?delay=0.6 HTTP/1.1\r\nHost: x\r\n\r\n")
        slow.append(c)
    c3 = await Conn.open(ep.port)
    await c3.send(b"GET /slow?delay=0.6 HTTP/1.1\r\nHost: x\r\n\r\n")  # 1 vs 1: either
    slow.append(c3)
    await wait_until(lambda: ep.pool.in_flight(1) + ep.pool.in_flight(2) == 3, "3 requests in flight")
    loads = {i: ep.pool.in_flight(i) for i in (1, 2)}
    assert sorted(loads.values()) == [1, 2]
    lighter = "b1" if loads[1] == 1 else "b2"
    got = await served_by(ep.port, 4)  # quick requests all go to the lighter replica
    assert got == [lighter] * 4
    for c in slow:
        r = await read_response(c.reader)
        assert r.status == 200
        await c.close()


async def test_set_policy_at_runtime(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b1, b2 = await backends("b1"), await backends("b2")
    ep = await endpoint(b1, b2)
    ep.pool.set_policy("round_robin")
    assert ep.pool.policy == "round_robin"
    got = await served_by(ep.port, 4)
    assert got in (["b1", "b2"] * 2, ["b2", "b1"] * 2)
    with pytest.raises(UnknownPolicy):
        ep.pool.set_policy("random")


async def test_runtime_updates_apply_immediately(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b1, b2 = await backends("b1"), await backends("b2")
    ep = await endpoint()
    pool = ep.pool
    assert (await request(ep.port)).status == 503
    pool.set_ready(1, b1.url)
    assert await served_by(ep.port, 2) == ["b1", "b1"]
    pool.set_ready(2, b2.url)
    pool.set_not_ready(1)
    assert await served_by(ep.port, 3) == ["b2"] * 3
    pool.set_ready(1, b1.url)
    pool.remove(2)
    assert await served_by(ep.port, 3) == ["b1"] * 3
    pool.set_ready(1, b2.url)  # same id, new address
    assert await served_by(ep.port, 2) == ["b2", "b2"]
    pool.remove(1)
    assert (await request(ep.port)).status == 503
    pool.remove(42)  # unknown ids are ignored
    pool.set_not_ready(42)
    pool.drain(42)
    with pytest.raises(InvalidUpstreamURL):
        pool.set_ready(3, "https://example.com")


async def test_drain_keeps_in_flight_and_wait_drained(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b1, b2 = await backends("b1"), await backends("b2")
    ep = await endpoint(b1, b2, policy="round_robin")
    pool = ep.pool
    c = await Conn.open(ep.port)
    await c.send(b"GET /slow?delay=0.4 HTTP/1.1\r\nHost: x\r\n\r\n")  # round robin: replica 1
    await wait_until(lambda: pool.in_flight(1) == 1, "the slow request in flight on replica 1")
    pool.drain(1)
    assert await served_by(ep.port, 3) == ["b2"] * 3  # no new requests on the draining replica
    assert not await pool.wait_drained(1, timeout=0.05)
    assert await pool.wait_drained(1, timeout=3)
    r = await read_response(c.reader)  # the in-flight request finished normally
    assert r.status == 200 and r.json()["backend"] == "b1"
    await c.close()
    assert pool.in_flight(1) == 0
    assert await pool.wait_drained(1, timeout=0)
    assert [i.state for i in pool.replicas()] == ["DRAINING", "READY"]


async def test_removed_replica_finishes_in_flight(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b1 = await backends("b1")
    ep = await endpoint(b1)
    pool = ep.pool
    c = await Conn.open(ep.port)
    try:
        await c.send(b"GET /stream?n=4&delay=0.1 HTTP/1.1\r\nHost: x\r\n\r\n")
        await wait_until(lambda: pool.in_flight(1) == 1, "the stream in flight")
        pool.remove(1)
        assert pool.in_flight(1) == 1
        waiter = asyncio.ensure_future(pool.wait_drained(1, timeout=3))
        r = await read_response(c.reader)
        assert r.body.count(b"data:") == 4
        assert await waiter
        assert pool.in_flight(1) == 0
        assert await c.at_eof(0.2) is False  # keep-alive still fine on the client side
    finally:
        await c.close()
    # its connection was not pooled: the backend sees it closed
    await wait_until(lambda: b1.open_connections == 0, "the backend's connection closed", within=2.0)


async def test_active_versions(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    old, new = await backends("old"), await backends("new")
    ep = await endpoint()
    pool = ep.pool
    pool.set_ready(1, old.url, version=1)
    pool.set_ready(2, new.url, version=2)
    pool.set_active_versions({1})
    assert await served_by(ep.port, 3) == ["old"] * 3
    pool.set_active_versions({2})
    assert await served_by(ep.port, 3) == ["new"] * 3
    pool.set_active_versions(None)
    assert set(await served_by(ep.port, 4)) == {"old", "new"}
    pool.set_active_versions(set())
    assert (await request(ep.port)).status == 503


async def test_request_count(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b)
    assert ep.take_request_count() == 0
    await served_by(ep.port, 5)
    assert ep.take_request_count() == 5
    assert ep.take_request_count() == 0
    ep.pool.remove(1)
    await request(ep.port)  # 503s are counted too: they are demand
    assert ep.pool.take_request_count() == 1


def test_replica_pool_without_loop() -> None:
    pool = ReplicaPool("svc")
    pool.set_ready(1, "http://127.0.0.1:1")
    pool.set_ready(2, "http+unix://%2Ftmp%2Fx.sock", version=3)
    info = pool.replicas()
    assert [(i.replica_id, i.url, i.version, i.state) for i in info] == [
        (1, "http://127.0.0.1:1", 1, "READY"),
        (2, "http+unix://%2Ftmp%2Fx.sock", 3, "READY"),
    ]
    pool.set_not_ready(2)
    assert pool.has_ready() and [r.replica_id for r in pool.eligible] == [1]
    seen = []
    pool.add_listener(lambda: seen.append(len(pool.eligible)))
    pool.remove(1)
    assert seen == [0] and not pool.has_ready()


async def test_wait_drained_on_a_ready_replica(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b)
    c = await Conn.open(ep.port)
    try:
        await c.send(b"GET /slow?delay=0.2 HTTP/1.1\r\nHost: x\r\n\r\n")
        await wait_until(lambda: ep.pool.in_flight(1) == 1, "the request in flight")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await ep.pool.wait_drained(1, timeout=5)
        assert loop.time() - t0 < 1.0  # woken when the request finished, not at the timeout
        await read_response(c.reader)
    finally:
        await c.close()
