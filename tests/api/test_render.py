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
        "SERVICE_NAME  ID  VERSION  IP            LAUNCHED     RESOURCES                STATUS  REGION\n"
        "vllm          1   1        xx.yy.zz.121  18 mins ago  1x GCP([Spot]{'L4': 1})  READY   us-east4\n"
        "vllm          2   1        xx.yy.zz.245  18 mins ago  1x GCP([Spot]{'L4': 1})  READY   us-east4"
    )


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
