"""An EC2 instance description -> ``InstanceStatus`` (pure; table-tested).

EC2 says why an instance stopped or went away in ``StateReason.Code``: a spot interruption is
``Server.SpotInstanceTermination`` (or, for a spot request, a status code such as
``instance-terminated-by-price``); ``Client.UserInitiatedShutdown`` is our own terminate (or a
person's); ``Client.InstanceInitiatedShutdown`` is the VM powering itself off.
``cluster_status`` folds a multi-node replica's nodes into one state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def cluster_status(nodes: Sequence[tuple[str, InstanceStatus | None]]) -> InstanceStatus:
    """A multi-node replica's state from its nodes' (``(ec2 id, status or None: EC2 knows none)``,
    by rank, head first). Any node preempted: PREEMPTED (the replica is lost with it). The head's
    own end is the replica's; a worker that is gone or stopped ends it too (EXITED, naming the node;
    SkyPilot fails a multi-node job with any node). Else PROVISIONING until every node runs."""
    n = len(nodes)
    for rank, (ec2_id, status) in enumerate(nodes):
        if status is not None and status.state == InstanceState.PREEMPTED:
            return InstanceStatus(
                state=InstanceState.PREEMPTED, detail=f"node {rank} of {n} ({ec2_id}): {status.detail}"
            )
    head_id, head = nodes[0]
    if head is None:
        return InstanceStatus(state=InstanceState.NOT_FOUND, detail=f"EC2 knows no instance {head_id}")
    if head.state not in (InstanceState.RUNNING, InstanceState.PROVISIONING):
        return head
    for rank, (ec2_id, status) in enumerate(nodes[1:], start=1):
        if status is None:
            return InstanceStatus(state=InstanceState.EXITED, detail=f"node {rank} of {n} ({ec2_id}) is gone")
        if status.state not in (InstanceState.RUNNING, InstanceState.PROVISIONING):
            why = status.detail or status.state.value
            return InstanceStatus(state=InstanceState.EXITED, detail=f"node {rank} of {n} ({ec2_id}): {why}")
    if any(s is not None and s.state == InstanceState.PROVISIONING for _, s in nodes):
        return InstanceStatus(
            state=InstanceState.PROVISIONING, detail=f"{n} EC2 instances, not all running yet"
        )
    return head
