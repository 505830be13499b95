"""Translation of Compute Engine failures into ``clouds/errors.py`` (pure, bar the isinstance checks).

Failures arrive two ways: a REST call fails (``google.api_core.exceptions.GoogleAPICallError``
with the HTTP status and ``error.errors[].reason`` such as ``quotaExceeded``), or a call
succeeds and returns an Operation that later ends with ``error.errors[].code`` such as
``ZONE_RESOURCE_POOL_EXHAUSTED`` and an ``httpErrorStatusCode`` (often 503 for a stockout, so
the codes are looked at before the status). Order of the decision:

    capacity codes  -> CapacityError   (another zone/region may have the machine type)
    quota codes     -> QuotaError      (another region or cloud)
    rate limits     -> TransientError  (the same call later: rate limits refill in seconds)
    401 / 403       -> AuthError
    408 / 429 / 5xx -> TransientError
    anything else   -> LaunchError
"""

from __future__ import annotations

from collections.abc import Iterable

import google.auth.exceptions
import requests
from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from .errors import AuthError, CapacityError, LaunchError, ProviderError, QuotaError, TransientError

CAPACITY_CODES = frozenset(
    {
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "RESOURCE_POOL_EXHAUSTED",
        "RESOURCEPOOLEXHAUSTED",
        "STOCKOUT",
        "ZONE_STOCKOUT",
    }
)
QUOTA_CODES = frozenset({"QUOTA_EXCEEDED", "QUOTAEXCEEDED", "INSUFFICIENT_QUOTA", "LIMITEXCEEDED"})
RATE_CODES = frozenset(
    {"RATELIMITEXCEEDED", "USERRATELIMITEXCEEDED", "RATE_LIMIT_EXCEEDED", "RESOURCE_OPERATION_RATE_EXCEEDED"}
)
AUTH_CODES = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED", "FORBIDDEN", "AUTHERROR"})


def _norm(code: str) -> str:
    return code.strip().upper()


def classify(codes: Iterable[str], http_status: int | None) -> type[ProviderError]:
    """The error class for a failure with these GCP error codes/reasons and HTTP status."""
    found = {_norm(c) for c in codes if c}
    if found & CAPACITY_CODES:
        return CapacityError
    if found & QUOTA_CODES:
        return QuotaError
    if found & RATE_CODES:
        return TransientError
    if found & AUTH_CODES or http_status in (401, 403):
        return AuthError
    if http_status is not None and (http_status in (408, 429) or http_status >= 500):
        return TransientError
    return LaunchError


def _api_codes(exc: gexc.GoogleAPICallError) -> list[str]:
    codes = [exc.reason or ""]
    for item in exc.errors or ():
        if isinstance(item, dict):
            codes += [str(item.get("reason", "")), str(item.get("code", ""))]
    grpc_status = getattr(exc, "grpc_status_code", None)
    if grpc_status is not None:
        codes.append(grpc_status.name)
    return codes


def _status_of(exc: gexc.GoogleAPICallError) -> int | None:
    code = exc.code
    return code if isinstance(code, int) else None


def translate(exc: BaseException, doing: str) -> ProviderError:
    """The ProviderError for an exception raised by the SDK while ``doing`` (e.g. "insert ...")."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, gexc.GoogleAPICallError):
        codes = _api_codes(exc)
        cls = classify(codes, _status_of(exc))
        shown = ", ".join(sorted({c for c in codes if c}))
        return cls(f"GCP {doing} failed: {exc.message}" + (f" ({shown})" if shown else ""))
    if isinstance(exc, google.auth.exceptions.TransportError):
        return TransientError(f"GCP {doing}: cannot reach Google ({exc})")
    if isinstance(exc, google.auth.exceptions.GoogleAuthError):
        return AuthError(
            f"GCP {doing}: credentials rejected or missing ({exc}); run "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
        )
    if isinstance(exc, gexc.RetryError | TimeoutError | requests.Timeout | requests.ConnectionError):
        return TransientError(f"GCP {doing}: {type(exc).__name__}: {exc}")
    return LaunchError(f"GCP {doing} failed: {type(exc).__name__}: {exc}")


def operation_error(operation: compute_v1.Operation, doing: str) -> ProviderError | None:
    """The error a finished Operation reports (None when it succeeded)."""
    items = list(operation.error.errors) if operation.error else []
    status = operation.http_error_status_code or None
    if not items and status is None:
        return None
    codes = [item.code for item in items]
    message = "; ".join(f"{item.code}: {item.message}" for item in items) or operation.http_error_message
    return classify(codes, status)(f"GCP {doing} failed: {message}")
