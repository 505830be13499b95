"""Compute Engine instance status -> ``InstanceStatus`` (pure).

PROVISIONING, STAGING, REPAIRING, PENDING  -> PROVISIONING
RUNNING                                    -> RUNNING
STOPPING, TERMINATED, STOPPED on a SPOT VM -> PREEMPTED (Stratus never stops VMs, it deletes
                                              them; a spot VM stops only when preempted,
                                              with instanceTerminationAction STOP)
the same on a STANDARD VM                  -> PREEMPTED when a compute.instances.preempted
                                              or host-maintenance termination is on record,
                                              else EXITED (the guest shut itself down)
SUSPENDING, SUSPENDED                      -> EXITED (suspended outside Stratus)
any status while Stratus deletes it        -> TERMINATED (this provider asked, or a delete
                                              operation on the VM is on record)
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import InstanceState, InstanceStatus

_STARTING = frozenset({"PROVISIONING", "STAGING", "REPAIRING", "PENDING"})
_STOPPED = frozenset({"STOPPING", "TERMINATED", "STOPPED"})
_SUSPENDED = frozenset({"SUSPENDING", "SUSPENDED"})
# Zone operations that mean the cloud took the VM back.
INTERRUPTION_OPERATIONS = frozenset(
    {"compute.instances.preempted", "compute.instances.terminateOnHostMaintenance"}
)


@dataclass(frozen=True)
class InstanceFacts:
    status: str  # the GCP status
    spot: bool  # scheduling.provisioningModel == SPOT (or the legacy preemptible flag)
    last_stop: str = ""  # lastStopTimestamp
    interruption: str = ""  # the operationType on record for it (INTERRUPTION_OPERATIONS), if any
    deleting: bool = False  # Stratus asked to delete it


def derive_status(facts: InstanceFacts) -> InstanceStatus:
    if facts.deleting:
        return InstanceStatus(
            state=InstanceState.TERMINATED, detail=f"being deleted (GCP status {facts.status})"
        )
    if facts.status in _STARTING:
        return InstanceStatus(state=InstanceState.PROVISIONING, detail=f"GCP status {facts.status}")
    if facts.status == "RUNNING":
        return InstanceStatus(state=InstanceState.RUNNING)
    if facts.status in _STOPPED:
        since = f" at {facts.last_stop}" if facts.last_stop else ""
        if facts.interruption:
            return InstanceStatus(
                state=InstanceState.PREEMPTED,
                detail=f"GCP {facts.interruption}{since} (status {facts.status})",
            )
        if facts.spot:
            return InstanceStatus(
                state=InstanceState.PREEMPTED, detail=f"spot VM preempted{since} (status {facts.status})"
            )
        return InstanceStatus(
            state=InstanceState.EXITED, detail=f"the VM stopped{since} (status {facts.status})"
        )
    if facts.status in _SUSPENDED:
        return InstanceStatus(
            state=InstanceState.EXITED, detail=f"the VM was suspended (status {facts.status})"
        )
    return InstanceStatus(state=InstanceState.PROVISIONING, detail=f"unknown GCP status {facts.status!r}")
