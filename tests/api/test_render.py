"""The CLI's pure rendering: SkyServe's table layout, durations, ages, times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import typer

from libs.events.types import Placement
from services.api import render
from services.api.cli import parse_when
from services.api.views import resources_text

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_table_matches_the_seed_layout() -> None:
    services = [
        {
            "name": "vllm", "versions": [1], "uptime_seconds": 35, "status": "READY",
            "replicas_ready": 2, "replicas_total": 2, "endpoint": "http://xx.yy.zz.100:30001",
            "replicas": [
                {"service": "vllm", "replica_id": 1, "version": 1, "ip": "xx.yy.zz.121",
                 "launched_at": (NOW - timedelta(minutes=18)).isoformat(),
                 "resources": "1x GCP([Spot]{'L4': 1})", "status": "READY", "region": "us-east4"},
                {"service": "vllm", "replica_id": 2, "version": 1, "ip": "xx.yy.zz.245",
                 "launched_at": (NOW - timedelta(minutes=18)).isoformat(),
                 "resources": "1x GCP([Spot]{'L4': 1})", "status": "READY", "region": "us-east4"},
            ],
        }
    ]  # fmt: skip
    assert render.status_report(services, NOW) == (
        "Services\n"
        "NAME  VERSION  UPTIME  STATUS  REPLICAS  ENDPOINT\n"
        "vllm  1        35s     READY   2/2       xx.yy.zz.100:30001\n"
        "\n"
        "\n"
        "Service Replicas\n"
        "SERVICE_NAME  ID  VERSION  IP            LAUNCHED     RESOURCES                STATUS  REGION    "
        "HOURLY_PRICE\n"
        "vllm          1   1        xx.yy.zz.121  18 mins ago  1x GCP([Spot]{'L4': 1})  READY   us-east4  -\n"
        "vllm          2   1        xx.yy.zz.245  18 mins ago  1x GCP([Spot]{'L4': 1})  READY   us-east4  -"
    )


def cloud_service(**extra: object) -> dict[str, object]:
    """One AWS spot replica placed by the scheduler, one Azure on-demand replica, one local one."""
    replicas = [
        {"service": "chat", "replica_id": 1, "version": 2, "ip": "3.85.107.228",
         "launched_at": (NOW - timedelta(minutes=2)).isoformat(), "cloud": "aws",
         "region": "us-east-1", "zone": "use1-az4", "price_per_hour": 0.3612,
         "resources": "1x AWS([Spot]g5.xlarge, {'A10G': 1})", "status": "READY",
         "placement_reason": "aws/us-east-1/use1-az4 g5.xlarge spot at $0.3612/h: best of 9 offers"},
        {"service": "chat", "replica_id": 2, "version": 2, "ip": None, "launched_at": None,
         "cloud": "azure", "region": "eastus", "zone": "2", "price_per_hour": 12.5,
         "resources": "1x Azure({'A100-80GB': 8})", "status": "PROVISIONING"},
        {"service": "chat", "replica_id": 3, "version": 2, "ip": "127.0.0.1",
         "launched_at": NOW.isoformat(), "cloud": "local", "region": None, "zone": None,
         "price_per_hour": None, "resources": "1x Local()", "status": "NOT_READY",
         "status_reason": "last probe: connection refused", "placement_reason": "local"},
    ]  # fmt: skip
    service = {
        "name": "chat", "version": 2, "versions": [2], "uptime_seconds": 125, "status": "READY",
        "replicas_ready": 1, "replicas_total": 3, "endpoint": "10.0.0.5:30002",
        "replicas": replicas, "spec": {"service": {"readiness_probe": "/health"}},
    }  # fmt: skip
    service.update(extra)
    return service


def columns(table: str) -> list[list[str]]:
    """Each row cut at the header's column starts: a cell out of its column shows up as a bad cut."""
    header, *rows = table.splitlines()
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = [*zip(starts, [*starts[1:], None], strict=True)]
    return [[line[a:b].rstrip() for a, b in bounds] for line in [header, *rows]]


def test_replicas_show_cloud_region_zone_and_hourly_price() -> None:
    title, table = render.replicas_table([cloud_service()], NOW).split("\n", 1)
    assert title == "Service Replicas"
    assert columns(table) == [
        list(render.REPLICA_COLUMNS),
        ["chat", "1", "2", "3.85.107.228", "2 mins ago", "1x AWS([Spot]g5.xlarge, {'A10G': 1})", "READY",
         "us-east-1 (use1-az4)", "$ 0.361"],
        ["chat", "2", "2", "-", "-", "1x Azure({'A100-80GB': 8})", "PROVISIONING", "eastus (zone 2)",
         "$ 12.500"],
        ["chat", "3", "2", "127.0.0.1", "a few secs ago", "1x Local()", "NOT_READY", "-", "-"],
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("replica", "text"),
    [({"region": "us-east4", "zone": "us-east4-a"}, "us-east4 (us-east4-a)"),
     ({"region": "eastus", "zone": ""}, "eastus"), ({"zone": "3"}, "zone 3"), ({}, "-")],
)  # fmt: skip
def test_region_text(replica: dict[str, str], text: str) -> None:
    assert render.region_text(replica) == text


@pytest.mark.parametrize(
    ("price", "text"),
    [(None, "-"), (0, "-"), (0.0, "-"), (True, "-"), ("1.2", "-"), (1.4866, "$ 1.487"), (3, "$ 3.000")],
)  # fmt: skip
def test_price_text(price: object, text: str) -> None:
    assert render.price_text(price) == text


def test_verbose_shows_each_replicas_placement_reason() -> None:
    out = render.status_report([cloud_service()], NOW, verbose=True)
    details = out.split("Service Details\n", 1)[1].splitlines()
    assert details[details.index("  Endpoint:    http://10.0.0.5:30002") + 1 :] == [
        "  Replica 1:",
        "    placed: aws/us-east-1/use1-az4 g5.xlarge spot at $0.3612/h: best of 9 offers",
        "  Replica 3:",
        "    placed: local",
        "    NOT_READY: last probe: connection refused",
    ]
    assert "placed:" not in render.status_report([cloud_service()], NOW)  # the table alone without -v


def test_a_tls_endpoint_is_shown_with_https() -> None:
    tls = {"service": {"tls": {"keyfile": "key.pem", "certfile": "cert.pem"}}}
    for endpoint in ("10.0.0.5:30002", "http://10.0.0.5:30002"):
        svc = cloud_service(spec=tls, endpoint=endpoint)
        assert render.is_tls(svc)
        row = render.services_table([svc]).splitlines()[2]
        assert row.endswith("  https://10.0.0.5:30002"), row
        assert "  Endpoint:    https://10.0.0.5:30002" in render.details([svc], NOW)
    plain = cloud_service()
    assert not render.is_tls(plain) and not render.is_tls({"spec": {"service": "oops"}})
    assert render.services_table([plain]).splitlines()[2].endswith("  10.0.0.5:30002")
    assert render.endpoint_text("https://h:1") == "h:1" and render.endpoint_text(None, tls=True) == "-"


def test_empty_status() -> None:
    assert (
        render.status_report([], NOW)
        == "Services\nNo existing services.\n\n\nService Replicas\nNo existing replicas."
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.2, "< 1s"), (35, "35s"), (65, "1m 5s"), (3600, "1h"), (90061, "1d 1h 1m 1s")],
)
def test_uptime(seconds: float | None, text: str) -> None:
    assert render.readable_duration(seconds) == text


@pytest.mark.parametrize(
    ("ago", "text"),
    [(3, "a few secs ago"), (42, "42 secs ago"), (60, "1 min ago"), (18 * 60, "18 mins ago"),
     (3600, "1 hr ago"), (3 * 86400, "3 days ago")],
)  # fmt: skip
def test_launched_ago(ago: int, text: str) -> None:
    assert render.readable_ago(NOW - timedelta(seconds=ago), NOW) == text


def test_resources_column() -> None:
    assert (
        resources_text(Placement(cloud="gcp", accelerators={"L4": 1.0}, use_spot=True))
        == "1x GCP([Spot]{'L4': 1})"
    )
    assert (
        resources_text(Placement(cloud="aws", instance_type="g5.xlarge", accelerators={"A10G": 1.0}))
        == "1x AWS(g5.xlarge, {'A10G': 1})"
    )
    assert resources_text(Placement()) == "1x Local()"


def test_parse_when() -> None:
    assert parse_when("10m", NOW) == NOW - timedelta(minutes=10)
    assert parse_when("1d", NOW) == NOW - timedelta(days=1)
    assert parse_when("2024-04-30T10:00:00Z", NOW) == datetime(2024, 4, 30, 10, tzinfo=UTC)
    assert parse_when("2024-04-30T10:00:00", NOW) == datetime(2024, 4, 30, 10, tzinfo=UTC)
    with pytest.raises(typer.Exit):
        parse_when("yesterday-ish", NOW)
