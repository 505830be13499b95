"""Azure SDK failures as ``clouds.errors`` (the translation at the boundary; pure).

From ``azure.core.exceptions``: an ``HttpResponseError`` carries ARM's error body as ``.error``
(``code``, ``message``) and ``.status_code``; an operation that failed asynchronously (a VM whose
allocation failed after its PUT was accepted) surfaces as the same error with the operation's code.

    capacity   SkuNotAvailable, AllocationFailed, ZonalAllocationFailed,
               OverconstrainedAllocationRequest, OverconstrainedZonalAllocationRequest
    quota      QuotaExceeded, PublicIPCountLimitReached, OperationNotAllowed naming a quota
    auth       ClientAuthenticationError (no credential, 401), AuthenticationFailed,
               AuthorizationFailed, InvalidAuthenticationToken*, 403
    transient  429, 5xx, Internal*Error / ServerTimeout codes (also on a failed async operation),
               ServiceRequestError / ServiceResponseError (connection, timeout)
    other      everything else (LaunchError)
"""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from .errors import AuthError, CapacityError, LaunchError, ProviderError, QuotaError, TransientError

CAPACITY_CODES = frozenset(
    {
        "SkuNotAvailable",
        "AllocationFailed",
        "ZonalAllocationFailed",
        "OverconstrainedAllocationRequest",
        "OverconstrainedZonalAllocationRequest",
    }
)
# PublicIPCountLimitReached: the subscription's public IPs in the region are used up (a quota).
QUOTA_CODES = frozenset({"QuotaExceeded", "PublicIPCountLimitReached"})
AUTH_CODES = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailed",
        "InvalidAuthenticationToken",
        "InvalidAuthenticationTokenTenant",
        "ExpiredAuthenticationToken",
        "LinkedAuthorizationFailed",
    }
)
# An async operation's failure arrives on a 200 poll: its code alone says it was the platform's.
TRANSIENT_CODES = frozenset(
    {
        "TooManyRequests",
        "RetryableError",
        "InternalServerError",
        "InternalExecutionError",
        "InternalOperationError",
        "ServerTimeout",
        "ServiceUnavailable",
        "GatewayTimeout",
    }
)

AUTH_HINT = "run `az login` or fix the service principal's role assignment, then `stratus check`"


def error_code(exc: HttpResponseError) -> str:
    error = exc.error
    return str(error.code) if error is not None and error.code else ""


def _message(exc: AzureError) -> str:
    if isinstance(exc, HttpResponseError) and exc.error is not None and exc.error.message:
        return str(exc.error.message)
    return (str(exc.message) if exc.message else str(exc)).splitlines()[0]


def translate(exc: Exception, doing: str) -> ProviderError:
    """``exc`` (raised while ``doing``) as the provider error it means."""
    if isinstance(exc, ProviderError):
        return exc
    if not isinstance(exc, AzureError):
        return LaunchError(f"{doing}: {exc!r}")
    message = _message(exc)
    if isinstance(exc, ClientAuthenticationError):  # no usable credential, or a 401
        return AuthError(f"{doing}: Azure rejected the credentials: {message}; {AUTH_HINT}")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(f"{doing}: cannot reach Azure Resource Manager: {message}")
    if not isinstance(exc, HttpResponseError):
        return LaunchError(f"{doing}: {message}")
    code, status = error_code(exc), exc.status_code or 0
    where = f"{doing}: {code or status}: {message}"
    if code in CAPACITY_CODES:
        return CapacityError(f"{where} (no capacity for this size here now: another region may have it)")
    if code in QUOTA_CODES or (code == "OperationNotAllowed" and "quota" in message.lower()):
        return QuotaError(f"{where} (request a quota increase in the Azure portal, or use another region)")
    if code in AUTH_CODES or status in (401, 403):
        return AuthError(f"{where}; {AUTH_HINT}")
    if code in TRANSIENT_CODES or status == 429 or status >= 500:
        return TransientError(f"{where} (retry later)")
    return LaunchError(where)
