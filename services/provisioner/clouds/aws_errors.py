"""botocore's errors -> ``clouds/errors.py``, from EC2's real error codes.

capacity   InsufficientInstanceCapacity, InsufficientCapacity, InsufficientHostCapacity,
           InsufficientReservedInstanceCapacity, SpotMaxPriceTooLow, and Unsupported when it
           says the type is not offered in the zone (try another zone)
quota      InstanceLimitExceeded, VcpuLimitExceeded, MaxSpotInstanceCountExceeded,
           InsufficientFreeAddressesInSubnet
auth       AuthFailure, UnauthorizedOperation, InvalidClientTokenId, SignatureDoesNotMatch,
           ExpiredToken, OptInRequired, Blocked; no credentials at all
transient  RequestLimitExceeded, Throttling*, InternalError, ServiceUnavailable, Unavailable,
           any 5xx, and connection failures (EndpointConnectionError, timeouts)
other      everything else (LaunchError: a bad image id, an unknown instance type...)
"""

from __future__ import annotations

import botocore.exceptions

from .errors import AuthError, CapacityError, LaunchError, ProviderError, QuotaError, TransientError

CAPACITY_CODES = frozenset({
    "InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity", "SpotMaxPriceTooLow", "InsufficientCapacityOnHost",
})  # fmt: skip
QUOTA_CODES = frozenset({
    "InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded",
    "InsufficientFreeAddressesInSubnet", "SecurityGroupLimitExceeded", "RulesPerSecurityGroupLimitExceeded",
})  # fmt: skip
AUTH_CODES = frozenset({
    "AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch",
    "ExpiredToken", "RequestExpired", "OptInRequired", "Blocked", "AccessDenied", "AccessDeniedException",
})  # fmt: skip
TRANSIENT_CODES = frozenset({
    "RequestLimitExceeded", "Throttling", "ThrottlingException", "InternalError", "InternalFailure",
    "ServiceUnavailable", "Unavailable", "RequestTimeout",
})  # fmt: skip
HINTS: dict[type[ProviderError], str] = {
    CapacityError: "try another zone or region",
    QuotaError: "request a quota increase (Service Quotas console) or use another region",
    AuthError: "check the AWS credentials and their IAM permissions (`stratus check`)",
    TransientError: "retry shortly",
}


def classify(code: str, status: int, message: str = "") -> type[ProviderError]:
    """The error class for an EC2 error code and HTTP status (pure)."""
    if code in CAPACITY_CODES:
        return CapacityError
    if code == "Unsupported" and ("Availability Zone" in message or "capacity" in message.lower()):
        return CapacityError
    if code in QUOTA_CODES:
        return QuotaError
    if code in AUTH_CODES:
        return AuthError
    if code in TRANSIENT_CODES or code.startswith("Throttl") or status >= 500 or status == 429:
        return TransientError
    if status in (401, 403):
        return AuthError
    return LaunchError


def translate(exc: Exception, doing: str) -> ProviderError:
    """``exc`` from boto3 as one of our errors; the message names what we were doing and the code."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code, message = str(err.get("Code", "")), str(err.get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        cls = classify(code, status, message)
        text = f"AWS {doing}: {code}: {message}"
    elif isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        cls, text = AuthError, f"AWS {doing}: {exc}"
    elif isinstance(
        exc,
        botocore.exceptions.EndpointConnectionError
        | botocore.exceptions.ConnectTimeoutError
        | botocore.exceptions.ReadTimeoutError
        | botocore.exceptions.ConnectionClosedError,
    ):
        cls, text = TransientError, f"AWS {doing}: cannot reach the endpoint: {exc}"
    else:
        cls, text = LaunchError, f"AWS {doing}: {exc}"
    hint = HINTS.get(cls)
    return cls(f"{text} ({hint})" if hint else text)


def error_code(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
