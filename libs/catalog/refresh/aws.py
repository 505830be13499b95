"""AWS prices: the Price List API (``pricing:GetProducts``, on-demand Linux, shared tenancy)
and EC2 spot price history (``ec2:DescribeSpotPriceHistory``, the latest price per zone).

Spot history names zones by *name* (``us-east-1a``), which maps to a different physical zone
in each account; the catalog keys zones by zone *ID* (``use1-az1``). The mapping comes from
``ec2:DescribeAvailabilityZones`` of the same account, so it is right for the credentials used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import boto3
import botocore.exceptions

from ..errors import RefreshAuthError, RefreshError
from .write import Prices, Updater

PRICING_REGION = "us-east-1"  # one of the Price List API's endpoints
MAX_PAGES = 50  # per instance type / region: bounded even if an API keeps paging
_AUTH_CODES = frozenset(
    {"AuthFailure", "UnrecognizedClientException", "AccessDenied", "AccessDeniedException",
     "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken"}
)  # fmt: skip


def _translate(exc: Exception, what: str) -> RefreshError:
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return RefreshAuthError(
            f"{what}: no AWS credentials (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID)"
        )
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _AUTH_CODES:
            return RefreshAuthError(f"{what}: AWS refused the credentials ({code})")
        return RefreshError(f"{what}: {code or 'error'}: {exc}")
    return RefreshError(f"{what}: {exc}")


def _on_demand_usd(item: Mapping[str, Any]) -> float | None:
    for term in (item.get("terms", {}).get("OnDemand") or {}).values():
        for dim in (term.get("priceDimensions") or {}).values():
            usd = (dim.get("pricePerUnit") or {}).get("USD")
            if usd is not None and str(dim.get("unit", "Hrs")).lower().startswith("hr"):
                try:
                    value = float(usd)
                except ValueError:
                    continue
                if value > 0:
                    return value
    return None


def on_demand_prices(client: Any, instance_types: Sequence[str]) -> dict[tuple[str, str], float]:
    """(region, instance type) -> on-demand USD/hour (Linux, shared tenancy, no pre-installed software)."""
    out: dict[tuple[str, str], float] = {}
    for itype in instance_types:
        filters = [
            {"Type": "TERM_MATCH", "Field": f, "Value": v}
            for f, v in (("instanceType", itype), ("operatingSystem", "Linux"), ("tenancy", "Shared"),
                         ("preInstalledSw", "NA"), ("capacitystatus", "Used"))
        ]  # fmt: skip
        token: str | None = None
        for _ in range(MAX_PAGES):
            kwargs: dict[str, Any] = {"ServiceCode": "AmazonEC2", "Filters": filters, "MaxResults": 100}
            if token:
                kwargs["NextToken"] = token
            try:
                page = client.get_products(**kwargs)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                raise _translate(exc, f"pricing GetProducts {itype}") from exc
            for raw in page.get("PriceList", []):
                item = json.loads(raw) if isinstance(raw, str) else raw
                attrs = item.get("product", {}).get("attributes", {})
                price = _on_demand_usd(item)
                region = attrs.get("regionCode")
                if price is not None and region and attrs.get("instanceType") == itype:
                    out[(region, itype)] = price
            token = page.get("NextToken")
            if not token:
                break
    return out


def spot_prices(client: Any, instance_types: Sequence[str], now: datetime) -> dict[tuple[str, str], float]:
    """(zone ID, instance type) -> the latest Linux spot price in one region (``client``'s)."""
    try:
        zones = client.describe_availability_zones()["AvailabilityZones"]
        history: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            kwargs: dict[str, Any] = {
                "InstanceTypes": list(instance_types), "ProductDescriptions": ["Linux/UNIX"], "StartTime": now
            }  # fmt: skip
            if token:
                kwargs["NextToken"] = token
            page = client.describe_spot_price_history(**kwargs)
            history.extend(page.get("SpotPriceHistory", []))
            token = page.get("NextToken")
            if not token:
                break
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise _translate(exc, "ec2 spot price history") from exc
    zone_id = {z["ZoneName"]: z["ZoneId"] for z in zones if "ZoneId" in z}
    latest: dict[tuple[str, str], tuple[str, float]] = {}
    for h in history:
        zid = zone_id.get(h.get("AvailabilityZone", ""))
        if zid is None or not str(h.get("ProductDescription", "")).startswith("Linux/UNIX"):
            continue
        key = (zid, h["InstanceType"])
        stamp = str(h.get("Timestamp", ""))
        if key not in latest or stamp > latest[key][0]:
            latest[key] = (stamp, float(h["SpotPrice"]))
    return {k: v for k, (_, v) in latest.items()}


def aws_updater(
    rows: Sequence[Mapping[str, str]],
    *,
    now: datetime,
    session: boto3.Session | None = None,
    endpoints: Mapping[str, str] | None = None,
) -> Updater:
    """Fetch every price the AWS rows need; the updater maps a row to its new prices."""
    try:
        session = session or boto3.Session()
    except botocore.exceptions.BotoCoreError as exc:  # e.g. AWS_PROFILE names no profile
        raise RefreshAuthError(f"AWS credentials: {exc}") from exc
    ep = endpoints or {}
    types = sorted({r["InstanceType"] for r in rows})
    try:
        pricing = session.client("pricing", region_name=PRICING_REGION, endpoint_url=ep.get("pricing"))
    except botocore.exceptions.BotoCoreError as exc:
        raise _translate(exc, "pricing client") from exc
    od = on_demand_prices(pricing, types)
    spot: dict[tuple[str, str], float] = {}
    for region in sorted({r["Region"] for r in rows}):
        in_region = sorted({r["InstanceType"] for r in rows if r["Region"] == region})
        try:
            ec2 = session.client("ec2", region_name=region, endpoint_url=ep.get("ec2"))
        except botocore.exceptions.BotoCoreError as exc:
            raise _translate(exc, f"ec2 client {region}") from exc
        spot.update(spot_prices(ec2, in_region, now))

    def update(row: Mapping[str, str]) -> Prices:
        itype = row["InstanceType"]
        return od.get((row["Region"], itype)), spot.get((row.get("AvailabilityZone", ""), itype))

    return update
