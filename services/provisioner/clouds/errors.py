"""Errors of the cloud providers.

    ProviderError            base; ``kind`` is the ReplicaLaunchFailed kind it maps to
    ├── CapacityError        no capacity for this instance type here now: try another zone/region
    ├── QuotaError           the account's quota is used up: try another region or cloud
    ├── AuthError            credentials missing or rejected: permanent until an operator fixes them
    ├── TransientError       the same call may succeed later (throttling, timeouts): retry with backoff
    ├── LaunchError          any other launch failure (bad task, isolation unavailable): permanent
    └── InstanceNotFound     the instance id names nothing this provider knows

Providers translate SDK and subprocess failures into these with ``raise X from exc``; a message
says what failed and, where it can, what to do about it. ``error_for_status`` gives the class for
an HTTP status when the cloud's error code says nothing more specific.
"""

from __future__ import annotations

from typing import ClassVar, Literal

FailureKind = Literal["capacity", "quota", "auth", "transient", "other"]


class ProviderError(Exception):
    """Base of every error raised by a cloud provider."""

    kind: ClassVar[FailureKind] = "other"


class CapacityError(ProviderError):
    kind = "capacity"


class QuotaError(ProviderError):
    kind = "quota"


class AuthError(ProviderError):
    kind = "auth"


class TransientError(ProviderError):
    kind = "transient"


class LaunchError(ProviderError):
    """A launch failed for a reason retrying the same placement will not fix."""


class InstanceNotFound(ProviderError):
    def __init__(self, instance_id: str, reason: str = "no such instance") -> None:
        self.instance_id = instance_id
        super().__init__(f"instance {instance_id!r}: {reason}")


def error_for_status(status: int) -> type[ProviderError]:
    """The error class an HTTP status implies on its own (codes decide first: see each cloud)."""
    if status in (401, 403):
        return AuthError
    if status == 429 or status >= 500:
        return TransientError
    return LaunchError
