"""GCP prices from the Cloud Billing Catalog API (Compute Engine's SKUs, service 6F81-5844-456A).

GPU SKUs ("Nvidia Tesla T4 GPU running in Americas", "... attached to Spot Preemptible VMs")
price one GPU per hour per region; host SKUs price a family's vCPU and GiB of RAM per hour
("N1 Predefined Instance Core running in ...", "A2 Instance Ram ..."), so a host row is
``vcpus * core + memory * ram``. Families and GPU names outside the tables below are not
recognised: their rows keep their old prices (the report counts them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from ..errors import RefreshAuthError, RefreshError
from .write import Prices, Updater

BILLING_URL = "https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus"
MAX_PAGES = 200
# The GPU's name in SKU descriptions -> the catalog's accelerator name.
GPU_NAMES = {
    "tesla t4": "T4", "tesla v100": "V100", "tesla p100": "P100", "tesla p4": "P4", "tesla a100": "A100",
    "a100 80gb": "A100-80GB", "tesla a100 80gb": "A100-80GB", "h100 80gb": "H100", "h100": "H100",
    "h100 80gb mega": "H100-MEGA", "h100 mega 80gb": "H100-MEGA", "h200 141gb": "H200", "h200": "H200",
    "l4": "L4", "b200": "B200",
}  # fmt: skip
# Instance type prefix -> the family's name in host SKU descriptions.
HOST_FAMILIES = {"n1": "N1 Predefined", "a2": "A2", "a3": "A3", "g2": "G2"}
# Premium or discounted variants of a SKU, not the list price of a VM.
_NOT_LIST_PRICE = ("sole tenancy", "commitment", "reserved", "custom", "dws", "calendar mode", "flex")
_GPU = re.compile(r"^(?:spot preemptible )?nvidia (?P<name>.+?) gpu\b")
_HOST = re.compile(r"^(?:spot preemptible )?(?P<fam>n1 predefined|a2|a3|g2) instance (?P<kind>core|ram)\b")


def _unit_price(sku: Mapping[str, Any]) -> float | None:
    for info in sku.get("pricingInfo") or []:
        for rate in (info.get("pricingExpression") or {}).get("tieredRates") or []:
            if float(rate.get("startUsageAmount", 0) or 0) == 0:
                money = rate.get("unitPrice") or {}
                return int(money.get("units", 0) or 0) + int(money.get("nanos", 0) or 0) / 1e9
    return None


def fetch_skus(
    http: httpx.Client, *, url: str = BILLING_URL, token: str | None = None
) -> list[dict[str, Any]]:
    """Every SKU of Compute Engine, page by page (bounded)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    skus: list[dict[str, Any]] = []
    page_token = ""
    for _ in range(MAX_PAGES):
        params = {
            "currencyCode": "USD",
            "pageSize": "5000",
            **({"pageToken": page_token} if page_token else {}),
        }
        try:
            resp = http.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise RefreshError(f"Cloud Billing Catalog: {exc}") from exc
        if resp.status_code in (401, 403):
            raise RefreshAuthError(f"Cloud Billing Catalog refused the credentials (HTTP {resp.status_code})")
        if resp.status_code != 200:
            raise RefreshError(f"Cloud Billing Catalog: HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise RefreshError("Cloud Billing Catalog answered something that is not JSON") from exc
        skus.extend(body.get("skus") or [])
        page_token = body.get("nextPageToken") or ""
        if not page_token:
            return skus
    raise RefreshError(f"Cloud Billing Catalog kept paging past {MAX_PAGES} pages")


def price_tables(skus: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str, bool], float]:
    """(region, "gpu"|"core"|"ram", accelerator or family, spot) -> USD per unit-hour."""
    out: dict[tuple[str, str, str, bool], float] = {}
    for sku in skus:
        cat = sku.get("category") or {}
        if cat.get("resourceFamily") != "Compute" or cat.get("usageType") not in ("OnDemand", "Preemptible"):
            continue
        desc = str(sku.get("description", "")).lower()
        if any(word in desc for word in _NOT_LIST_PRICE):
            continue
        spot = cat.get("usageType") == "Preemptible" or "spot" in desc or "preemptible" in desc
        price = _unit_price(sku)
        if price is None:
            continue
        key: tuple[str, str] | None = None
        if m := _GPU.match(desc):
            name = GPU_NAMES.get(m.group("name").strip())
            key = ("gpu", name) if name else None
        elif m := _HOST.match(desc):
            fam = next((f for p, f in HOST_FAMILIES.items() if f.lower() == m.group("fam")), None)
            key = (m.group("kind"), fam) if fam else None
        if key is None:
            continue
        for region in sku.get("serviceRegions") or []:
            out[(str(region), key[0], key[1], spot)] = price
    return out


def gcp_updater(skus: Sequence[Mapping[str, Any]]) -> Updater:
    table = price_tables(skus)

    def host(row: Mapping[str, str], spot: bool) -> float | None:
        fam = HOST_FAMILIES.get(row["InstanceType"].split("-", 1)[0])
        core = table.get((row["Region"], "core", fam or "", spot))
        ram = table.get((row["Region"], "ram", fam or "", spot))
        if core is None or ram is None:
            return None
        return float(row["vCPUs"]) * core + float(row["MemoryGiB"]) * ram

    def gpu(row: Mapping[str, str], spot: bool) -> float | None:
        per = table.get((row["Region"], "gpu", row["AcceleratorName"], spot))
        return None if per is None else per * float(row["AcceleratorCount"] or 1)

    def update(row: Mapping[str, str]) -> Prices:
        f = host if row.get("InstanceType") else gpu
        return f(row, False), f(row, True)

    return update
