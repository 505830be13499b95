"""Pieces of the fake Compute Engine API (tests/fakes/gcp_server.py): records, faults, errors.

``ApiError.body`` is Google's JSON error shape, which google-api-core turns into the same
``GoogleAPICallError`` subclasses (``code``, ``errors[].reason``) a real answer gives.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

HTTP_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class Fault:
    verb: str  # insert / get / list / delete / firewall / *
    zone: str  # a zone, or * for any (global calls match only *)
    status: int  # the HTTP status (or the operation's httpErrorStatusCode)
    code: str  # errors[].reason for an HTTP answer, errors[].code for an operation
    message: str
    on_operation: bool = False
    times: int | None = None  # None: every time
    name: str = ""  # only for instances whose name contains this ("" for any)


def take(faults: list[Fault], verb: str, zone: str, *, on_operation: bool, name: str = "") -> Fault | None:
    """The first fault matching the call (used up when its ``times`` run out)."""
    for fault in faults:
        if fault.on_operation != on_operation or fault.verb not in (verb, "*"):
            continue
        if fault.zone not in (zone, "*") or fault.name not in name:
            continue
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                faults.remove(fault)
        return fault
    return None


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
                "status": HTTP_STATUS.get(self.status, "UNKNOWN"),
            }
        }


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def matches(filter_text: str, resource: dict[str, Any]) -> bool:
    """The few Compute list filters the provider uses."""
    if not filter_text:
        return True
    if m := re.fullmatch(r'\s*labels\.([a-z0-9_-]+)\s*=\s*"([^"]*)"\s*', filter_text):
        return bool(resource.get("labels", {}).get(m[1]) == m[2])
    if m := re.fullmatch(r"\s*labels\.([a-z0-9_-]+)\s*:\s*\*\s*", filter_text):
        return m[1] in resource.get("labels", {})
    if m := re.fullmatch(r'\s*targetId\s*=\s*"?(\d+)"?\s*', filter_text):
        return bool(resource.get("targetId") == m[1])
    raise ApiError(
        400, "invalid", f"Invalid value for field 'filter': '{filter_text}'. Invalid list filter expression."
    )
