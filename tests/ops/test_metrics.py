"""/metrics: the router's per-service request counters, latency and in-flight, scraped over real
HTTP from the metrics server; usage (instance-hours, cost) folded from the fleet."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.events.types import Placement
from libs.fleet.state import FleetState, ReplicaState, ServiceState
from libs.runtime.errors import SettingsError
from libs.runtime.settings import Settings
from libs.telemetry.router_stats import NoStats, watch_router
from libs.telemetry.serve import metrics_endpoints, serve_metrics
from libs.telemetry.usage import usage
from services.router.options import EndpointOptions
from services.router.router import Router

BODY = b'{"ok": true}'


async def _backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.readuntil(b"\r\n\r\n"):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(BODY), BODY))
        await writer.drain()


@pytest.fixture
async def backend_url() -> AsyncIterator[str]:
    server = await asyncio.start_server(lambda r, w: asyncio.ensure_future(_guarded(r, w)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.close()
    await server.wait_closed()


async def _guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await _backend(reader, writer)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_router_metrics_count_requests_per_service_and_replica(
    backend_url: str, tmp_path: Path
) -> None:
    router = Router("127.0.0.1")
    watch_router(router)
    url, stop = serve_metrics("router", tmp_path)
    try:
        chat = await router.add_service("chat-metrics", 0)
        empty = await router.add_service("empty-metrics", 0)
        router.pool("chat-metrics").set_ready(1, backend_url)
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(7):
                assert (await http.get(f"http://127.0.0.1:{chat}/x")).status_code == 200
            assert (await http.get(f"http://127.0.0.1:{empty}/x")).status_code == 503
            text = (await http.get(url)).text
        assert [e["url"] for e in metrics_endpoints(tmp_path)] == [url]
        reqs = samples(text, "stratus_router_requests_total")
        assert reqs[(("replica", "1"), ("service", "chat-metrics"), ("status", "200"))] == 7
        assert reqs[(("replica", "none"), ("service", "empty-metrics"), ("status", "503"))] == 1
        count = samples(text, "stratus_router_request_seconds_count")
        assert count[(("service", "chat-metrics"),)] == 7
        inf = samples(text, "stratus_router_request_seconds_bucket")
        assert inf[(("le", "+Inf"), ("service", "chat-metrics"))] == 7
        assert samples(text, "stratus_router_in_flight")[(("replica", "1"), ("service", "chat-metrics"))] == 0
        assert samples(text, "stratus_router_held_requests")[(("service", "empty-metrics"),)] == 0
    finally:
        stop()
        await router.close()
    assert metrics_endpoints(tmp_path) == []  # the address file goes with the server


async def test_router_metrics_off_counts_nothing_and_serves_no_router_family(
    backend_url: str, tmp_path: Path
) -> None:
    assert Settings.from_env({"STRATUS_ROUTER_METRICS": "off"}).router_metrics == "off"
    with pytest.raises(SettingsError, match="STRATUS_ROUTER_METRICS='no': not on or off"):
        Settings.from_env({"STRATUS_ROUTER_METRICS": "no"})
    router = Router("127.0.0.1")
    watch_router(router)
    url, stop = serve_metrics("router", tmp_path)
    try:
        port = await router.add_service("quiet-metrics", 0, options=EndpointOptions(metrics=False))
        router.pool("quiet-metrics").set_ready(1, backend_url)
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(3):
                assert (await http.get(f"http://127.0.0.1:{port}/x")).status_code == 200
            text = (await http.get(url)).text
        stats = router.endpoint("quiet-metrics").stats
        assert isinstance(stats, NoStats) and stats.requests == {} and sum(stats.buckets) == 0
        assert not any(labels == (("replica", "1"), ("service", "quiet-metrics"), ("status", "200"))
                       for labels in samples(text, "stratus_router_requests_total"))  # fmt: skip
        assert router.take_request_counts()["quiet-metrics"] == 3  # the autoscaler's QPS stays
    finally:
        stop()
        await router.close()


def test_usage_sums_hours_and_cost_by_cloud_and_capacity() -> None:
    spot = Placement(cloud="aws", region="us-east-1", use_spot=True, price_per_hour=0.5)
    od = Placement(cloud="gcp", region="us-east4", price_per_hour=2.0)
    svc = ServiceState(name="s", replicas={
        1: ReplicaState(replica_id=1, placement=spot, launched_at=0.0, preempted_at=1800.0),
        2: ReplicaState(replica_id=2, placement=od, launched_at=0.0),  # still running at now
        3: ReplicaState(replica_id=3, placement=od),  # never launched: no hours
    })  # fmt: skip
    got = usage(FleetState(services={"s": svc}), now=7200.0)
    assert got[("aws", "spot")].hours == pytest.approx(0.5)
    assert got[("aws", "spot")].cost == pytest.approx(0.25)
    assert got[("gcp", "on_demand")].hours == pytest.approx(2.0)
    assert got[("gcp", "on_demand")].cost == pytest.approx(4.0)
    assert json.dumps(sorted(got)) == '[["aws", "spot"], ["gcp", "on_demand"]]'
