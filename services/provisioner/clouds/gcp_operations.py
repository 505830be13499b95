"""Waiting for Compute Engine Operations (blocking; the provider runs these in a thread).

``operations.wait`` holds the request open until the operation is DONE or about two minutes
pass, so the loop below makes few calls; it is bounded by ``timeout_s`` overall.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from google.cloud import compute_v1

from .errors import TransientError
from .gcp_errors import operation_error, translate

# A single wait request: the server answers within ~120 s; allow it a margin.
_CALL_TIMEOUT_S = 150.0
# Least time between two wait calls (this runs in a worker thread, so sleeping blocks no loop).
_MIN_SPACING_S = 0.5


def _wait(
    call: Callable[[float], compute_v1.Operation],
    operation: compute_v1.Operation,
    *,
    timeout_s: float,
    doing: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> compute_v1.Operation:
    deadline = clock() + timeout_s
    current = operation
    while current.status != compute_v1.Operation.Status.DONE:
        remaining = deadline - clock()
        if remaining <= 0:
            raise TransientError(f"GCP {doing}: operation {operation.name} not done after {timeout_s:.0f}s")
        started = clock()
        try:
            current = call(min(remaining + 5.0, _CALL_TIMEOUT_S))
        except Exception as exc:
            raise translate(exc, f"{doing} (waiting for operation {operation.name})") from exc
        if current.status != compute_v1.Operation.Status.DONE and clock() - started < _MIN_SPACING_S:
            # wait may answer early without DONE: space the calls rather than spin.
            sleep(min(_MIN_SPACING_S, max(0.0, deadline - clock())))
    error = operation_error(current, doing)
    if error is not None:
        raise error
    return current


def wait_zone(
    client: compute_v1.ZoneOperationsClient,
    project: str,
    zone: str,
    operation: compute_v1.Operation,
    *,
    timeout_s: float,
    doing: str,
) -> compute_v1.Operation:
    """The zonal operation once DONE; its error (capacity, quota...) raised as a ProviderError."""

    def call(timeout: float) -> compute_v1.Operation:
        return client.wait(project=project, zone=zone, operation=operation.name, timeout=timeout)

    return _wait(call, operation, timeout_s=timeout_s, doing=doing)


def wait_global(
    client: compute_v1.GlobalOperationsClient,
    project: str,
    operation: compute_v1.Operation,
    *,
    timeout_s: float,
    doing: str,
) -> compute_v1.Operation:
    """The global operation (firewall changes) once DONE; its error raised as a ProviderError."""

    def call(timeout: float) -> compute_v1.Operation:
        return client.wait(project=project, operation=operation.name, timeout=timeout)

    return _wait(call, operation, timeout_s=timeout_s, doing=doing)
