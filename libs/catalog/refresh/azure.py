"""Azure prices from the public Retail Prices API (``prices.azure.com/api/retail/prices``).

One query per instance type (``armSkuName``), paged through ``NextPageLink`` (bounded). Linux
consumption prices only: Windows, Low Priority and reservation items are skipped; an item whose
``skuName`` ends in "Spot" is the spot price. No credentials are needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from ..errors import RefreshError
from .write import Prices, Updater

RETAIL_URL = "https://prices.azure.com/api/retail/prices"
MAX_PAGES = 20  # per instance type


def _items(http: httpx.Client, url: str, instance_type: str) -> list[dict[str, Any]]:
    filt = "serviceName eq 'Virtual Machines' and priceType eq 'Consumption'"
    filt += f" and armSkuName eq '{instance_type}'"
    next_url: str | None = url
    params: dict[str, str] | None = {"$filter": filt}
    items: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        if not next_url:
            return items
        try:
            resp = http.get(next_url, params=params)
        except httpx.HTTPError as exc:
            raise RefreshError(f"Azure Retail Prices ({instance_type}): {exc}") from exc
        if resp.status_code != 200:
            raise RefreshError(
                f"Azure Retail Prices ({instance_type}): HTTP {resp.status_code}: {resp.text[:200]}"
            )
        try:
            body = resp.json()
        except ValueError as exc:
            raise RefreshError(
                f"Azure Retail Prices ({instance_type}) answered something that is not JSON"
            ) from exc
        items.extend(body.get("Items") or [])
        next_url, params = body.get("NextPageLink") or None, None  # the link carries the query
    raise RefreshError(f"Azure Retail Prices ({instance_type}) kept paging past {MAX_PAGES} pages")


def retail_prices(
    http: httpx.Client, instance_types: Sequence[str], *, url: str = RETAIL_URL
) -> dict[tuple[str, str, bool], float]:
    """(region, instance type, spot) -> USD/hour (Linux)."""
    out: dict[tuple[str, str, bool], float] = {}
    for itype in instance_types:
        for it in _items(http, url, itype):
            sku_name = str(it.get("skuName", ""))
            if "windows" in str(it.get("productName", "")).lower() or "low priority" in sku_name.lower():
                continue
            if (
                it.get("type", "Consumption") != "Consumption"
                or it.get("unitOfMeasure", "1 Hour") != "1 Hour"
            ):
                continue
            price = it.get("retailPrice")
            if isinstance(price, int | float) and price > 0 and it.get("armSkuName") == itype:
                out[(str(it.get("armRegionName", "")), itype, sku_name.endswith("Spot"))] = float(price)
    return out


def azure_updater(prices: Mapping[tuple[str, str, bool], float]) -> Updater:
    def update(row: Mapping[str, str]) -> Prices:
        key = (row["Region"], row["InstanceType"])
        return prices.get((*key, False)), prices.get((*key, True))

    return update
