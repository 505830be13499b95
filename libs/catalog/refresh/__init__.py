"""``stratus catalog refresh``: new prices from the clouds' own pricing APIs.

    aws     Price List (pricing:GetProducts) + EC2 spot price history, through boto3's
            credential chain (endpoints overridable with boto3's AWS_ENDPOINT_URL_* variables)
    gcp     Cloud Billing Catalog REST (services/6F81-5844-456A/skus), with a bearer token from
            Application Default Credentials
    azure   Retail Prices REST (public, paged)

The instance list comes from the current catalog; only prices change (see ``write``). The new
file goes to ``$STRATUS_HOME/catalog/<cloud>.csv`` with ``<cloud>.meta.json`` (date, source)
and replaces the shipped file for that cloud from then on.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import boto3
import httpx

from ..errors import RefreshAuthError, RefreshError
from ..model import CLOUDS
from .aws import aws_updater
from .azure import RETAIL_URL, azure_updater, retail_prices
from .gcp import BILLING_URL, fetch_skus, gcp_updater
from .write import RefreshReport, Updater, current_rows, current_text, rewrite, save

__all__ = ["RefreshReport", "refresh_cloud"]

HTTP_TIMEOUT = httpx.Timeout(30.0)


def _gcp_token() -> str:
    """A bearer token from Application Default Credentials (gcloud auth application-default login)."""
    try:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests
    except ImportError as exc:  # google-auth comes with google-cloud-compute
        raise RefreshAuthError("google-auth is not installed") from exc
    try:
        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-billing.readonly"])
        creds.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    except google.auth.exceptions.GoogleAuthError as exc:
        raise RefreshAuthError(f"no usable Google credentials: {exc}") from exc
    token = getattr(creds, "token", None)
    if not isinstance(token, str) or not token:
        raise RefreshAuthError("Google credentials gave no access token")
    return token


def refresh_cloud(
    cloud: str,
    home: Path,
    *,
    now: datetime,
    aws_session: boto3.Session | None = None,
    aws_endpoints: dict[str, str] | None = None,
    http: httpx.Client | None = None,
    gcp_token: str | None = None,
    gcp_url: str = BILLING_URL,
    azure_url: str = RETAIL_URL,
) -> RefreshReport:
    """Refresh one cloud's prices into ``home``. Raises ``RefreshError`` (nothing written) when
    the API fails; the transports are injectable for tests (only the transport: the SDKs and
    the parsing are the real ones)."""
    if cloud not in CLOUDS:
        raise RefreshError(f"unknown cloud {cloud!r}; known: {', '.join(CLOUDS)}")
    text = current_text(home, cloud)
    rows = current_rows(text)
    owned = http is None
    client = http or httpx.Client(timeout=HTTP_TIMEOUT)
    try:
        update: Updater
        if cloud == "aws":
            update = aws_updater(rows, now=now, session=aws_session, endpoints=aws_endpoints)
            source = "AWS Price List + EC2 spot price history"
        elif cloud == "gcp":
            skus = fetch_skus(client, url=gcp_url, token=gcp_token if gcp_token is not None else _gcp_token())
            update, source = gcp_updater(skus), "GCP Cloud Billing Catalog"
        else:
            types = sorted({r["InstanceType"] for r in rows})
            update, source = azure_updater(retail_prices(client, types, url=azure_url)), "Azure Retail Prices"
    finally:
        if owned:
            client.close()
    new_text, updated, unchanged = rewrite(text, update)
    if updated == 0:
        raise RefreshError(f"{source} had no price for any of the {len(rows)} catalog rows; nothing written")
    path = save(home, cloud, new_text, now=now, source=source, updated=updated, unchanged=unchanged)
    return RefreshReport(cloud=cloud, path=str(path), rows=len(rows), updated=updated, unchanged=unchanged,
                         source=source)  # fmt: skip
