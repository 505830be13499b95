"""An EC2 instance description -> ``InstanceStatus`` (pure; table-tested).

EC2 says why an instance stopped or went away in ``StateReason.Code``: a spot interruption is
``Server.SpotInstanceTermination`` (or, for a spot request, a status code such as
``instance-terminated-by-price``); ``Client.UserInitiatedShutdown`` is our own terminate (or a
person's); ``Client.InstanceInitiatedShutdown`` is the VM powering itself off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import InstanceState, InstanceStatus

SPOT_REASONS = frozenset({"Server.SpotInstanceTermination", "Server.SpotInstanceShutdown"})
SPOT_REQUEST_INTERRUPTED = frozenset({
    "instance-terminated-by-price", "instance-terminated-no-capacity",
    "instance-terminated-capacity-oversubscribed", "instance-terminated-launch-group-constraint",
    "instance-stopped-by-price", "instance-stopped-no-capacity", "instance-stopped-capacity-oversubscribed",
    "marked-for-termination", "marked-for-stop",
})  # fmt: skip
GONE = ("shutting-down", "terminated", "stopping", "stopped")


def instance_status(desc: Mapping[str, Any], spot_request_status: str = "") -> InstanceStatus:
    """The state of one ``DescribeInstances`` item (and its spot request's status code, if any)."""
    state = str((desc.get("State") or {}).get("Name", ""))
    reason = str((desc.get("StateReason") or {}).get("Code", ""))
    message = str((desc.get("StateReason") or {}).get("Message", "")) or reason
    interrupted = reason in SPOT_REASONS or spot_request_status in SPOT_REQUEST_INTERRUPTED
    if state == "pending":
        return InstanceStatus(state=InstanceState.PROVISIONING, detail="EC2 instance pending")
    if state == "running":
        if spot_request_status in SPOT_REQUEST_INTERRUPTED:  # the two-minute warning
            return InstanceStatus(
                state=InstanceState.PREEMPTED, detail=f"spot interruption: {spot_request_status}"
            )
        return InstanceStatus(state=InstanceState.RUNNING)
    if state in GONE:
        if interrupted:
            why = spot_request_status if spot_request_status in SPOT_REQUEST_INTERRUPTED else message
            return InstanceStatus(state=InstanceState.PREEMPTED, detail=f"spot interruption: {why}")
        if reason == "Client.UserInitiatedShutdown":
            return InstanceStatus(state=InstanceState.TERMINATED, detail=f"EC2 instance {state}: {message}")
        return InstanceStatus(state=InstanceState.EXITED, detail=f"EC2 instance {state}: {message}")
    return InstanceStatus(state=InstanceState.NOT_FOUND, detail=f"EC2 instance state {state!r}")
