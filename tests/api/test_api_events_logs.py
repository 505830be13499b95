"""Events (filters, pagination, the live stream) and logs (replica and component files, follow)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from libs.events.types import EndpointAssigned, ReplicaTerminated, replica_stream, service_stream
from libs.replica_logs.files import tail_offset

from .conftest import SERVICE_YAML, Api, Live
from .fleet_events import launch_replica

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def seed(api: Api) -> None:
    for name in ("alpha", "beta"):
        r = await api.http.post("/v1/services", json={"name": name, "yaml": SERVICE_YAML})
        assert r.status_code == 201
    for i in range(5):
        await api.store.append(
            service_stream("alpha"),
            [EndpointAssigned(service="alpha", endpoint=f"http://127.0.0.1:{30000 + i}")],
            now=T0 + timedelta(minutes=i),
        )
    await launch_replica(api.store, "beta", 1)


async def all_pages(api: Api, **params: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    for _ in range(50):
        page = (await api.http.get("/v1/events", params={**params, "after": after})).json()
        events.extend(page["events"])
        after = page["next_after"]
        if not page["has_more"]:
            return events
    raise AssertionError("pagination did not end")


async def test_events_filter_by_service_and_type(api: Api) -> None:
    await seed(api)
    page = (await api.http.get("/v1/events")).json()
    assert len(page["events"]) == 11 and page["has_more"] is False
    assert page["next_after"] == page["events"][-1]["position"]
    alpha = (await api.http.get("/v1/events", params={"service": "alpha"})).json()["events"]
    assert [e["type"] for e in alpha] == ["ServiceRequested"] + ["EndpointAssigned"] * 5
    assert {e["service"] for e in alpha} == {"alpha"}
    assert alpha[1]["data"] == {"service": "alpha", "endpoint": "http://127.0.0.1:30000", "router_id": ""}
    assert alpha[1]["stream_id"] == "service-alpha" and alpha[1]["stream_version"] == 2
    typed = (await api.http.get("/v1/events", params={"type": "ReplicaReady,ServiceRequested"})).json()[
        "events"
    ]
    assert [(e["service"], e["type"]) for e in typed] == [
        ("alpha", "ServiceRequested"), ("beta", "ServiceRequested"), ("beta", "ReplicaReady"),
    ]  # fmt: skip
    repeated = (
        await api.http.get("/v1/events", params={"type": ["ReplicaReady", "ServiceRequested"]})
    ).json()
    assert repeated["events"] == typed
    r = await api.http.get("/v1/events", params={"type": "ServiceExploded"})
    assert r.status_code == 422 and "unknown event type 'ServiceExploded'" in r.json()["message"]


async def test_events_paginate_with_next_after(api: Api) -> None:
    await seed(api)
    everything = (await api.http.get("/v1/events")).json()["events"]
    paged = await all_pages(api, limit=2)
    assert paged == everything
    first = (await api.http.get("/v1/events", params={"limit": 2})).json()
    assert len(first["events"]) == 2 and first["has_more"] is True
    filtered = await all_pages(api, limit=2, service="beta")
    assert [e["type"] for e in filtered] == [
        "ServiceRequested", "ReplicaScheduled", "ReplicaProvisioningStarted",
        "ReplicaLaunched", "ReplicaReady",
    ]  # fmt: skip
    last = (await api.http.get("/v1/events", params={"last": 3, "service": "alpha"})).json()
    assert [e["data"]["endpoint"] for e in last["events"]] == [
        f"http://127.0.0.1:{p}" for p in (30002, 30003, 30004)
    ]
    assert last["next_after"] == everything[-1]["position"] and last["has_more"] is False
    r = await api.http.get("/v1/events", params={"last": 3, "after": 1})
    assert r.status_code == 422


async def test_events_by_time(api: Api) -> None:
    await seed(api)
    since = (T0 + timedelta(minutes=1)).isoformat()
    until = (T0 + timedelta(minutes=3)).isoformat()
    window = (await api.http.get("/v1/events", params={"since": since, "until": until})).json()["events"]
    assert [e["data"]["endpoint"][-5:] for e in window] == ["30001", "30002", "30003"]
    r = await api.http.get("/v1/events", params={"since": "2024-05-01T12:00:00"})
    assert r.status_code == 422 and "time zone" in r.json()["message"]


async def test_event_stream_follows_new_events(live: Live) -> None:
    api = live.api
    await seed(api)
    got: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=10, headers=api.headers()) as http,
        http.stream("GET", "/v1/events/stream", params={"service": "alpha"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")

        async def append_later() -> None:
            await asyncio.sleep(0.2)
            await api.store.append(service_stream("beta"), [EndpointAssigned(service="beta", endpoint="b")])
            await api.store.append(service_stream("alpha"), [EndpointAssigned(service="alpha", endpoint="a")])

        task = asyncio.create_task(append_later())
        async with asyncio.timeout(10):
            async for line in response.aiter_lines():
                if line.strip():
                    got.append(json.loads(line))
                    break
        await task
    assert [(e["service"], e["data"]["endpoint"]) for e in got] == [("alpha", "a")]


# --------------------------------------------------------------------------- logs


def test_tail_offset(tmp_path: Any) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"one\ntwo\nthree\n")
    assert [path.read_bytes()[tail_offset(path, n) :] for n in (0, 1, 2, 5)] == [
        b"", b"three\n", b"two\nthree\n", b"one\ntwo\nthree\n",
    ]  # fmt: skip
    path.write_bytes(b"no newline at the end")
    assert tail_offset(path, 1) == 0


async def test_replica_and_component_logs(api: Api) -> None:
    await seed(api)
    log = api.settings.replica_log("beta", 1)
    log.parent.mkdir(parents=True)
    log.write_text("setup\nserving on 8080\nGET / 200\n")
    r = await api.http.get("/v1/services/beta/replicas/1/logs")
    assert r.status_code == 200 and r.text == "setup\nserving on 8080\nGET / 200\n"
    assert r.headers["content-type"].startswith("text/plain")
    r = await api.http.get("/v1/services/beta/replicas/1/logs", params={"tail": 1})
    assert r.text == "GET / 200\n"
    r = await api.http.get("/v1/services/beta/replicas/7/logs")
    assert r.status_code == 404 and "has no replica 7" in r.json()["message"]
    await launch_replica(api.store, "alpha", 1)
    await api.projection.wait_for(await api.store.last_position(), 5)
    r = await api.http.get("/v1/services/alpha/replicas/1/logs")
    assert r.status_code == 404 and "no log yet" in r.json()["message"]

    comp = api.settings.component_log("scheduler")
    comp.parent.mkdir(parents=True, exist_ok=True)
    comp.write_text("reconciled alpha\n")
    assert (await api.http.get("/v1/components/scheduler/logs")).text == "reconciled alpha\n"
    assert (await api.http.get("/v1/services/alpha/logs/controller")).text == "reconciled alpha\n"
    r = await api.http.get("/v1/services/alpha/logs/load-balancer")
    assert r.status_code == 404 and "component 'router'" in r.json()["message"]
    r = await api.http.get("/v1/components/kernel/logs")
    assert r.status_code == 404 and "components: api, scheduler" in r.json()["message"]
    r = await api.http.get("/v1/services/alpha/logs/dashboard")
    assert r.status_code == 404 and "controller or load-balancer" in r.json()["message"]


async def test_following_a_replica_log_ends_with_the_replica(live: Live) -> None:
    api = live.api
    await seed(api)
    log = api.settings.replica_log("beta", 1)
    log.parent.mkdir(parents=True)
    log.write_text("first\n")
    received = b""
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=10, headers=api.headers()) as http,
        http.stream("GET", "/v1/services/beta/replicas/1/logs", params={"follow": "true"}) as response,
    ):
        assert response.status_code == 200

        async def write_then_end() -> None:
            await asyncio.sleep(0.2)
            with log.open("a") as f:
                f.write("second\n")
            await asyncio.sleep(0.2)
            await api.store.append(
                replica_stream("beta", 1),
                [ReplicaTerminated(service="beta", replica_id=1, instance_id="i-1")],
            )

        task = asyncio.create_task(write_then_end())
        async with asyncio.timeout(10):
            async for chunk in response.aiter_bytes():
                received += chunk
        await task
    assert received == b"first\nsecond\n"


async def test_a_terminated_replicas_log_is_readable_and_listed(api: Api) -> None:
    await seed(api)
    # Replica 3 of beta ended long ago: the projection forgot it, its log stays.
    old = api.settings.replica_log("beta", 3)
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text("replica 3 was here\n")
    r = await api.http.get("/v1/services/beta/replicas/3/logs")
    assert r.status_code == 200 and r.text == "replica 3 was here\n"
    r = await api.http.get("/v1/services/beta/replicas/7/logs")
    assert r.status_code == 404
    assert "its replicas: 1; terminated, logs readable: 3" in r.json()["message"]


async def test_following_a_truncated_log_starts_over(live: Live) -> None:
    api = live.api
    await seed(api)
    log = api.settings.replica_log("beta", 1)
    log.parent.mkdir(parents=True)
    log.write_text("a long first line\n")
    received = b""
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=10, headers=api.headers()) as http,
        http.stream("GET", "/v1/services/beta/replicas/1/logs", params={"follow": "true"}) as response,
    ):
        assert response.status_code == 200
        chunks = response.aiter_bytes()
        async with asyncio.timeout(10):
            received += await anext(chunks)
            log.write_text("new\n")  # truncated and rewritten, shorter than before
            while not received.endswith(b"new\n"):
                received += await anext(chunks)
    assert received == b"a long first line\nnew\n"


async def test_a_follow_cut_by_the_provisioner_going_away_says_so(live: Live) -> None:
    api = live.api
    await seed(api)
    log = api.settings.replica_log("beta", 1)
    log.parent.mkdir(parents=True)
    log.write_text("first\n")
    received = b""
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=10, headers=api.headers()) as http,
        http.stream("GET", "/v1/services/beta/replicas/1/logs", params={"follow": "true"}) as response,
    ):
        chunks = response.aiter_bytes()
        async with asyncio.timeout(15):
            received += await anext(chunks)
            await api.logs_server.unsubscribe()  # the provisioner stops answering
            async for chunk in chunks:
                received += chunk
    assert received.startswith(b"first\n")
    assert b"[stratus: the log stream was cut: no provisioner answered" in received
