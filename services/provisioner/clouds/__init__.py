"""Cloud providers: one interface (base.Provider), typed errors (errors), and implementations."""

from .base import Instance, InstanceState, InstanceStatus, LaunchTask, Provider
from .errors import (
    AuthError,
    CapacityError,
    InstanceNotFound,
    LaunchError,
    ProviderError,
    QuotaError,
    TransientError,
)

__all__ = [
    "AuthError",
    "CapacityError",
    "Instance",
    "InstanceNotFound",
    "InstanceState",
    "InstanceStatus",
    "LaunchError",
    "LaunchTask",
    "Provider",
    "ProviderError",
    "QuotaError",
    "TransientError",
]
