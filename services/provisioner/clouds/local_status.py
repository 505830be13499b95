"""A local instance's status, derived from its record and what is observed now (pure)."""

from __future__ import annotations

from .base import InstanceState, InstanceStatus
from .local_records import InstanceRecord


def derive_status(
    record: InstanceRecord | None,
    *,
    launching_here: bool,
    launcher_alive: bool,
    phase: str | None,
    exit_code: int | None,
) -> InstanceStatus:
    """``launcher_alive`` must be observed before ``exit_code`` is read: the launcher writes
    the exit code and then exits, so "dead" plus "no code" means it was killed."""
    if record is None:
        return InstanceStatus(state=InstanceState.NOT_FOUND)
    if record.lifecycle == "terminated":
        return InstanceStatus(state=InstanceState.TERMINATED)
    if record.lifecycle == "preempted":
        return InstanceStatus(state=InstanceState.PREEMPTED, detail="preempted")
    if record.lifecycle == "launching":
        if launching_here:
            return InstanceStatus(state=InstanceState.PROVISIONING, detail="launching")
        return InstanceStatus(
            state=InstanceState.EXITED,
            detail="the launch was interrupted before the process started; terminate it to clean up",
        )
    if launcher_alive:
        if phase == "run":
            return InstanceStatus(state=InstanceState.RUNNING, detail="run started")
        return InstanceStatus(state=InstanceState.PROVISIONING, detail="setup running")
    if exit_code is not None:
        return InstanceStatus(
            state=InstanceState.EXITED,
            exit_code=exit_code,
            detail=f"{phase or 'launcher'} exited with code {exit_code}",
        )
    return InstanceStatus(
        state=InstanceState.EXITED,
        detail="the replica's launcher died without recording an exit code (killed from outside?)",
    )
