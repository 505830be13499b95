"""What an Azure VM's provisioning and power states mean as an ``InstanceState`` (pure).

ARM shows a VM's instance view ``statuses``: ``ProvisioningState/<state>[/<error code>]`` and
``PowerState/<starting|running|stopping|stopped|deallocating|deallocated|unknown>``.

A spot eviction: with eviction policy Delete (ours) Azure deletes the VM and its OS disk, and its
NIC (delete option Detach) stays behind: a VM that is gone while its Stratus-tagged NIC remains
was evicted when it was spot (``gone_status``); with eviction policy Deallocate (a VM created
otherwise) an evicted spot VM shows ``PowerState/deallocated``. ARM has no other per-VM eviction
record (the Scheduled Events ``Preempt`` notice is only visible from inside the VM, and the
activity log's ``evictSpotVM`` entry needs the monitor API), so these two signals are what we use.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import InstanceState, InstanceStatus


def vm_status(codes: Sequence[str], *, spot: bool) -> InstanceStatus:
    """The state of a VM that exists, from its instance view status codes."""
    lowered = [c.lower() for c in codes]
    provisioning = next((c for c in lowered if c.startswith("provisioningstate/")), "")
    power = next((c.removeprefix("powerstate/") for c in lowered if c.startswith("powerstate/")), "")
    if provisioning.startswith("provisioningstate/failed"):
        code = next(c for c in codes if c.lower().startswith("provisioningstate/failed"))
        reason = code.split("/", 2)[2] if code.count("/") >= 2 else "unknown error"
        return InstanceStatus(
            state=InstanceState.EXITED, detail=f"Azure failed to provision the VM: {reason}"
        )
    if provisioning == "provisioningstate/deleting":
        return InstanceStatus(state=InstanceState.TERMINATED, detail="the VM is being deleted")
    if power == "running":
        return InstanceStatus(state=InstanceState.RUNNING)
    if power in ("deallocating", "deallocated"):
        if spot:
            return InstanceStatus(
                state=InstanceState.PREEMPTED, detail="Azure evicted the spot VM (deallocated)"
            )
        return InstanceStatus(state=InstanceState.EXITED, detail="the VM was deallocated outside Stratus")
    if power in ("stopping", "stopped"):
        return InstanceStatus(state=InstanceState.EXITED, detail="the VM was stopped (powered off)")
    return InstanceStatus(
        state=InstanceState.PROVISIONING, detail=f"VM {power or provisioning or 'being created'}"
    )


def gone_status(*, nic_left: bool, spot: bool) -> InstanceStatus:
    """The state of a VM ARM no longer has, from whether its NIC is still there."""
    if not nic_left:
        return InstanceStatus(state=InstanceState.NOT_FOUND, detail="no such VM in Azure")
    if spot:
        return InstanceStatus(
            state=InstanceState.PREEMPTED, detail="Azure evicted the spot VM (deleted it; its NIC remains)"
        )
    return InstanceStatus(state=InstanceState.EXITED, detail="the VM was deleted outside Stratus")
