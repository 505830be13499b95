"""Fakes of the clouds' pricing APIs, answering real-shaped JSON.

- ``PriceListServer``: AWS Price List Query API (JSON 1.1 over HTTP POST, ``X-Amz-Target:
  AWSPriceListService.GetProducts``) on loopback, for the real boto3 ``pricing`` client; one
  product per page, so paging is exercised. moto has no Price List API (EC2 spot history and
  zones come from a moto server).
- ``gcp_billing``: an ``httpx.MockTransport`` handler of Cloud Billing Catalog ``skus`` (two
  pages, bearer token required).
- ``azure_retail``: an ``httpx.MockTransport`` handler of Azure Retail Prices (paged by
  ``NextPageLink``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx


def aws_product(itype: str, region: str, usd: str, os_: str = "Linux") -> str:
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "sku": f"{itype}-{region}",
                "attributes": {
                    "instanceType": itype,
                    "regionCode": region,
                    "operatingSystem": os_,
                    "tenancy": "Shared",
                    "preInstalledSw": "NA",
                    "capacitystatus": "Used",
                },
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    f"{itype}.JRTCKXETXF": {
                        "priceDimensions": {
                            f"{itype}.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "description": f"${usd} per On Demand Linux {itype} Instance Hour",
                                "pricePerUnit": {"USD": usd},
                            }
                        }
                    }
                }
            },
        }
    )


class PriceListServer:
    def __init__(self, products: dict[str, list[str]]) -> None:
        self.products = products  # instance type -> PriceList entries
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                target = self.headers.get("X-Amz-Target", "")
                fake.requests.append(
                    {"target": target, "body": body, "auth": self.headers.get("Authorization")}
                )
                if target != "AWSPriceListService.GetProducts":
                    return self._send(400, {"__type": "UnknownOperationException"})
                filters = {f["Field"]: f["Value"] for f in body.get("Filters", [])}
                items = [
                    p
                    for p in fake.products.get(filters.get("instanceType", ""), [])
                    if json.loads(p)["product"]["attributes"]["operatingSystem"]
                    == filters.get("operatingSystem")
                ]
                start = int(body.get("NextToken") or 0)
                out: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": items[start : start + 1]}
                if start + 1 < len(items):
                    out["NextToken"] = str(start + 1)
                self._send(200, out)

            def _send(self, code: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[PriceListServer]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(5)


def gcp_sku(desc: str, usage: str, group: str, regions: list[str], units: int, nanos: int) -> dict[str, Any]:
    return {
        "name": f"services/6F81-5844-456A/skus/{abs(hash(desc)) % 10**8:08d}",
        "skuId": "X",
        "description": desc,
        "category": {
            "serviceDisplayName": "Compute Engine",
            "resourceFamily": "Compute",
            "resourceGroup": group,
            "usageType": usage,
        },
        "serviceRegions": regions,
        "pricingInfo": [
            {
                "effectiveTime": "2026-12-01T00:00:00Z",
                "pricingExpression": {
                    "usageUnit": "h",
                    "displayQuantity": 1,
                    "tieredRates": [
                        {
                            "startUsageAmount": 0,
                            "unitPrice": {"currencyCode": "USD", "units": str(units), "nanos": nanos},
                        }
                    ],
                },
            }
        ],
        "serviceProviderName": "Google",
    }


GCP_SKUS = [
    gcp_sku("Nvidia Tesla T4 GPU running in Americas", "OnDemand", "GPU", ["us-central1"], 0, 400_000_000),
    gcp_sku(
        "Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas",
        "Preemptible",
        "GPU",
        ["us-central1"],
        0,
        150_000_000,
    ),
    gcp_sku(
        "N1 Predefined Instance Core running in Americas", "OnDemand", "CPU", ["us-central1"], 0, 30_000_000
    ),
    gcp_sku(
        "N1 Predefined Instance Ram running in Americas", "OnDemand", "RAM", ["us-central1"], 0, 4_000_000
    ),
    gcp_sku(
        "Spot Preemptible N1 Predefined Instance Core running in Americas",
        "Preemptible",
        "CPU",
        ["us-central1"],
        0,
        7_000_000,
    ),
    gcp_sku(
        "Spot Preemptible N1 Predefined Instance Ram running in Americas",
        "Preemptible",
        "RAM",
        ["us-central1"],
        0,
        1_000_000,
    ),
    gcp_sku(
        "Nvidia Tesla A100 GPU running in Americas", "Commit1Yr", "GPU", ["us-central1"], 1, 0
    ),  # not on-demand
    gcp_sku(
        "Nvidia Tesla T4 GPU Sole Tenancy Premium running in Americas",
        "OnDemand",
        "GPU",
        ["us-central1"],
        0,
        990_000_000,
    ),
    gcp_sku("Storage PD Capacity", "OnDemand", "PDStandard", ["us-central1"], 0, 40_000_000),
]


def gcp_billing(token: str, skus: list[dict[str, Any]] = GCP_SKUS) -> httpx.MockTransport:
    half = len(skus) // 2

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/services/6F81-5844-456A/skus":
            return httpx.Response(
                404, json={"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
            )
        if request.headers.get("Authorization") != f"Bearer {token}":
            return httpx.Response(
                403,
                json={
                    "error": {
                        "code": 403,
                        "message": "The caller does not have permission",
                        "status": "PERMISSION_DENIED",
                    }
                },
            )
        if request.url.params.get("pageToken") == "p2":
            return httpx.Response(200, json={"skus": skus[half:], "nextPageToken": ""})
        return httpx.Response(200, json={"skus": skus[:half], "nextPageToken": "p2"})

    return httpx.MockTransport(handle)


def azure_item(sku: str, region: str, price: float, sku_name: str, product: str) -> dict[str, Any]:
    return {
        "currencyCode": "USD",
        "tierMinimumUnits": 0.0,
        "retailPrice": price,
        "unitPrice": price,
        "armRegionName": region,
        "location": "US East",
        "effectiveStartDate": "2024-01-01T00:00:00Z",
        "meterName": sku_name,
        "productName": product,
        "skuName": sku_name,
        "serviceName": "Virtual Machines",
        "serviceFamily": "Compute",
        "unitOfMeasure": "1 Hour",
        "type": "Consumption",
        "isPrimaryMeterRegion": True,
        "armSkuName": sku,
    }


def azure_retail(items: dict[str, list[dict[str, Any]]], calls: list[str]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        query = parse_qs(urlsplit(str(request.url)).query)
        if "page" in query:  # a NextPageLink we handed out
            sku, page = query["sku"][0], int(query["page"][0])
        else:
            filt = query.get("$filter", [""])[0]
            sku, page = filt.rsplit("armSkuName eq '", 1)[-1].rstrip("'"), 0
        got = items.get(sku, [])
        chunk = got[page * 2 : page * 2 + 2]
        link = (
            f"https://prices.azure.com/api/retail/prices?sku={sku}&page={page + 1}"
            if page * 2 + 2 < len(got)
            else None
        )
        return httpx.Response(
            200, json={"BillingCurrency": "USD", "Items": chunk, "NextPageLink": link, "Count": len(chunk)}
        )

    return httpx.MockTransport(handle)


def aws_refuse(handler: BaseHTTPRequestHandler) -> None:
    """A ``do_POST`` that refuses every call as AWS does for a bad access key."""
    handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
    data = json.dumps({"__type": "UnrecognizedClientException", "message": "The security token is invalid."})
    handler.send_response(400)
    handler.send_header("Content-Type", "application/x-amz-json-1.1")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data.encode())
