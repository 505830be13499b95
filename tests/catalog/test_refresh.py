"""``catalog refresh``: the real SDKs/HTTP clients against faked pricing APIs, and the result
read back through the loader (the refreshed file replaces the shipped one for its cloud)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from libs.catalog import RefreshAuthError, RefreshError, load_catalog
from libs.catalog.load import meta_path, override_path
from libs.catalog.refresh import refresh_cloud

from .fake_pricing import PriceListServer, aws_product, aws_refuse, azure_item, azure_retail, gcp_billing

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


def test_aws_refresh_from_price_list_and_spot_history(tmp_path: Path, moto_url: str) -> None:
    products = {
        "g5.xlarge": [
            aws_product("g5.xlarge", "us-east-1", "0.9999"),
            aws_product("g5.xlarge", "us-west-2", "1.2345"),
            aws_product("g5.xlarge", "us-east-1", "7.0", os_="Windows"),
        ],
        "p4d.24xlarge": [aws_product("p4d.24xlarge", "us-east-1", "30.5")],
    }
    with PriceListServer(products).running() as fake:
        report = refresh_cloud(
            "aws",
            tmp_path,
            now=NOW,
            aws_session=_session(),
            aws_endpoints={"pricing": fake.url, "ec2": moto_url},
        )
    # The real boto3 signed every call; paging followed NextToken for g5.xlarge's two Linux items.
    g5_calls = [
        r
        for r in fake.requests
        if {"Field": "instanceType", "Type": "TERM_MATCH", "Value": "g5.xlarge"} in r["body"]["Filters"]
    ]
    assert len(g5_calls) == 2 and all(
        r["auth"] and r["auth"].startswith("AWS4-HMAC-SHA256") for r in fake.requests
    )
    offers = [o for o in load_catalog(tmp_path).offers if o.cloud == "aws"]
    assert len(offers) == 1463 == report.rows
    east = [o for o in offers if o.instance_type == "g5.xlarge" and o.region == "us-east-1"]
    assert east and all(o.price == 0.9999 for o in east)  # Linux, not the Windows price
    assert {o.price for o in offers if o.instance_type == "g5.xlarge" and o.region == "us-west-2"} == {1.2345}
    # Spot: moto's history names zones by name; the refresh maps them to the account's zone IDs.
    ec2 = _session().client("ec2", region_name="us-east-1", endpoint_url=moto_url)
    ids = {z["ZoneId"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    spot_rows = [o for o in east if o.zone in ids]
    assert spot_rows and all(o.spot_price == 0.00001 for o in spot_rows)  # moto's spot price
    assert report.updated > 0 and report.unchanged > 0  # regions/types the fakes did not price keep theirs
    meta = json.loads(meta_path(tmp_path, "aws").read_text())
    assert meta["date"] == NOW.isoformat() and meta["source"].startswith("AWS Price List")
    assert next(s for s in load_catalog(tmp_path).snapshots if s.cloud == "aws").date == NOW.isoformat()


def test_aws_refresh_refused_credentials_write_nothing(tmp_path: Path, moto_url: str) -> None:
    with PriceListServer({}).running() as fake:
        fake.server.RequestHandlerClass.do_POST = aws_refuse  # type: ignore[attr-defined]
        with pytest.raises(RefreshAuthError, match="AWS refused the credentials"):
            refresh_cloud(
                "aws",
                tmp_path,
                now=NOW,
                aws_session=_session(),
                aws_endpoints={"pricing": fake.url, "ec2": moto_url},
            )
    assert not override_path(tmp_path, "aws").exists()


def test_gcp_refresh_prices_hosts_and_gpus_from_skus(tmp_path: Path) -> None:
    with httpx.Client(transport=gcp_billing("tok")) as http:
        report = refresh_cloud(
            "gcp",
            tmp_path,
            now=NOW,
            http=http,
            gcp_token="tok",
            gcp_url="https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus",
        )
    offers = load_catalog(tmp_path).offers
    host = next(
        o
        for o in offers
        if o.zone == "us-central1-a" and o.instance_type == "n1-standard-4" and not o.accelerator
    )
    assert host.price == pytest.approx(4 * 0.03 + 15 * 0.004)
    assert host.spot_price == pytest.approx(4 * 0.007 + 15 * 0.001)
    t4 = next(
        o
        for o in offers
        if o.zone == "us-central1-a"
        and o.instance_type == "n1-standard-4"
        and o.accelerator == "T4"
        and o.accelerator_count == 2
    )
    assert t4.price == pytest.approx(4 * 0.03 + 15 * 0.004 + 2 * 0.40)
    assert t4.spot_price == pytest.approx(4 * 0.007 + 15 * 0.001 + 2 * 0.15)
    # A2 (no A2 SKUs, and the A100 SKU is a commitment price) keeps its snapshot price.
    a2 = next(o for o in offers if o.zone == "us-central1-a" and o.instance_type == "a2-highgpu-1g")
    assert a2.price == pytest.approx(3.67339)
    assert 0 < report.updated < report.rows and report.unchanged == report.rows - report.updated


def test_gcp_refresh_without_permission_is_an_auth_error(tmp_path: Path) -> None:
    with (
        httpx.Client(transport=gcp_billing("tok")) as http,
        pytest.raises(RefreshAuthError, match="HTTP 403"),
    ):
        refresh_cloud("gcp", tmp_path, now=NOW, http=http, gcp_token="wrong")
    assert not override_path(tmp_path, "gcp").exists()


def test_azure_refresh_follows_pages_and_keeps_linux_consumption(tmp_path: Path) -> None:
    sku = "Standard_NC24ads_A100_v4"
    series = "Virtual Machines NCadsA100v4 Series"
    items = {
        sku: [
            azure_item(sku, "eastus", 9.99, "NC24ads A100 v4", series + " Windows"),
            azure_item(sku, "eastus", 0.5, "NC24ads A100 v4 Low Priority", series),
            azure_item(sku, "eastus", 3.1, "NC24ads A100 v4", series),
            azure_item(sku, "eastus", 0.41, "NC24ads A100 v4 Spot", series),
            azure_item(sku, "westus3", 3.3, "NC24ads A100 v4", series),
        ]
    }
    calls: list[str] = []
    with httpx.Client(transport=azure_retail(items, calls)) as http:
        report = refresh_cloud("azure", tmp_path, now=NOW, http=http)
    assert sum(sku in c for c in calls) == 3  # three pages of two
    offers = [o for o in load_catalog(tmp_path).offers if o.cloud == "azure" and o.instance_type == sku]
    east = next(o for o in offers if o.region == "eastus")
    assert (east.price, east.spot_price) == (3.1, 0.41)
    west3 = next(o for o in offers if o.region == "westus3")
    assert west3.price == 3.3 and west3.spot_price is not None  # spot not in the answer: kept
    central = next(o for o in offers if o.region == "centralus")
    assert (central.price, central.spot_price) == (4.15, 0.4565)  # not in the answer: kept
    assert report.updated == 2 and report.rows == 187
    assert "2 of 187 rows got new prices from Azure Retail Prices" in report.summary()


def test_an_answer_with_no_usable_price_writes_nothing(tmp_path: Path) -> None:
    with (
        httpx.Client(transport=azure_retail({}, [])) as http,
        pytest.raises(RefreshError, match="nothing written"),
    ):
        refresh_cloud("azure", tmp_path, now=NOW, http=http)
    assert not override_path(tmp_path, "azure").exists()
    assert load_catalog(tmp_path).snapshots[2].source == "shipped"


def test_cli_refresh_aws_through_boto3_endpoint_variables(tmp_path: Path, moto_url: str) -> None:
    from typer.testing import CliRunner

    from services.api.cli import app

    products = {"p4d.24xlarge": [aws_product("p4d.24xlarge", "us-east-1", "30.5")]}
    env = {
        "STRATUS_HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_EC2": moto_url,
    }
    with PriceListServer(products).running() as fake:
        result = CliRunner().invoke(
            app, ["catalog", "refresh", "--cloud", "aws"], env={**env, "AWS_ENDPOINT_URL_PRICING": fake.url}
        )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("aws: ") and "rows got new prices from AWS Price List" in result.stdout
    p4d = [
        o
        for o in load_catalog(tmp_path).offers
        if o.instance_type == "p4d.24xlarge" and o.region == "us-east-1"
    ]
    assert p4d and {o.price for o in p4d} == {30.5}


def test_cli_refresh_errors_are_named(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from services.api.cli import app

    result = CliRunner().invoke(
        app, ["catalog", "refresh", "--cloud", "ibm"], env={"STRATUS_HOME": str(tmp_path)}
    )
    assert (
        result.exit_code == 1
        and "--cloud ibm: unknown cloud; the catalog has aws, gcp, azure" in result.stderr
    )
    # No credentials anywhere in boto3's chain (None removes a variable for the run).
    env: dict[str, str | None] = {
        "STRATUS_HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None,
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }  # fmt: skip
    result = CliRunner().invoke(app, ["catalog", "refresh", "--cloud", "aws"], env=env)
    assert result.exit_code == 1 and "aws: not refreshed: pricing GetProducts" in result.stderr
    assert "no AWS credentials" in result.stderr and not override_path(tmp_path, "aws").exists()
