"""The fold's handlers of a replica's life: provisioning to termination, probes, failures."""

from __future__ import annotations

from msgspec.structs import replace

from libs.events.types import (
    Preempted,
    PreemptionRequested,
    ProbeFailed,
    ReplicaDrained,
    ReplicaFailed,
    ReplicaLaunched,
    ReplicaLaunchFailed,
    ReplicaNotReady,
    ReplicaProcessExited,
    ReplicaProvisioningStarted,
    ReplicaReady,
    ReplicaTerminated,
    ReplicaTerminationRequested,
)

from .fold_base import MAX_FAILED_KEPT, NO_PLACEMENT, RETRYABLE_LAUNCH_FAILURES, FolderBase
from .state import (
    Failure,
    LaunchFailure,
    ProcessExit,
    TerminationRequest,
)
from .status import PREEMPTED, REPLACED_STATUSES, TERMINATED, replica_status


class ReplicaFolding(FolderBase):
    __slots__ = ()

    def provisioning_started(self, ev: ReplicaProvisioningStarted, at: float) -> None:
        found = self.replica(ev)
        if found is None or found[1].provisioning_at is not None:
            return
        svc, rep = found
        placement = rep.placement if ev.placement == NO_PLACEMENT else ev.placement
        svc.replicas[rep.replica_id] = replace(rep, provisioning_at=at, placement=placement)

    def launched(self, ev: ReplicaLaunched, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        placement = rep.placement if ev.placement == NO_PLACEMENT else ev.placement
        svc.replicas[rep.replica_id] = replace(
            rep, launched_at=at, instance_id=ev.instance_id, url=ev.url, placement=placement
        )

    def launch_failed(self, ev: ReplicaLaunchFailed, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        placement = rep.placement if ev.placement == NO_PLACEMENT else ev.placement
        if ev.kind in ("capacity", "quota"):
            self.zone_event(svc, placement, ev.kind, at, ev.message)
        if rep.launched_at is not None or rep.termination is not None:
            return  # a cancelled launch is not a failure
        if replica_status(rep) in REPLACED_STATUSES:
            return
        rep = replace(rep, launch_failed=LaunchFailure(kind=ev.kind, message=ev.message, at=at))
        svc.replicas[rep.replica_id] = rep
        self.count_failure(svc, rep, at, blocking=ev.kind not in RETRYABLE_LAUNCH_FAILURES)

    def preempted(self, ev: Preempted, at: float) -> None:
        svc = self.own(ev.service)
        if svc is None:
            return
        rep = svc.replicas.get(ev.replica_id)
        placement = ev.placement
        if placement == NO_PLACEMENT and rep is not None:
            placement = rep.placement
        self.zone_event(svc, placement, "preempted", at)
        if rep is None or rep.termination is not None or replica_status(rep) in REPLACED_STATUSES:
            return
        svc.replicas[rep.replica_id] = replace(rep, preempted_at=at)

    def preemption_requested(self, ev: PreemptionRequested, at: float) -> None:
        found = self.replica(ev)
        if found is None or found[1].preemption_requested_at is not None:
            return
        svc, rep = found
        if rep.termination is not None or replica_status(rep) in REPLACED_STATUSES:
            return
        svc.replicas[rep.replica_id] = replace(rep, preemption_requested_at=at)

    def termination_requested(self, ev: ReplicaTerminationRequested, at: float) -> None:
        found = self.replica(ev)
        if found is None or found[1].termination is not None:
            return
        svc, rep = found
        req = TerminationRequest(reason=ev.reason, drain_seconds=ev.drain_seconds, purge=ev.purge, at=at)
        svc.replicas[rep.replica_id] = replace(rep, termination=req)

    def drained(self, ev: ReplicaDrained, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        if rep.termination is None or rep.drained_at is not None or rep.terminated_at is not None:
            return
        svc.replicas[rep.replica_id] = replace(rep, drained_at=at)

    def terminated(self, ev: ReplicaTerminated, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        rep = replace(rep, terminated_at=at, cleanup_error=ev.cleanup_error)
        status = replica_status(rep)
        if status in (TERMINATED, PREEMPTED):
            del svc.replicas[rep.replica_id]
            return
        svc.replicas[rep.replica_id] = rep
        reps = svc.replicas.values()
        done = [r.replica_id for r in reps if r.terminated_at is not None and not r.cleanup_error]
        if len(done) > MAX_FAILED_KEPT:
            for rid in sorted(done)[: len(done) - MAX_FAILED_KEPT]:
                del svc.replicas[rid]

    def process_exited(self, ev: ReplicaProcessExited, at: float) -> None:
        found = self.replica(ev)
        if found is None or found[1].exited is not None:
            return
        svc, rep = found
        expected = rep.termination is not None or rep.terminated_at is not None
        was_failed = replica_status(rep) in REPLACED_STATUSES
        exit_ = ProcessExit(
            exit_code=ev.exit_code, reason=ev.reason, log_tail=ev.log_tail, at=at, expected=expected
        )
        rep = replace(rep, exited=exit_)
        svc.replicas[rep.replica_id] = rep
        if not expected and not was_failed:
            self.count_failure(svc, rep, at, blocking=True)

    # ----------------------------------------------------------------- probes

    def ready(self, ev: ReplicaReady, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        if rep.termination is not None or replica_status(rep) in REPLACED_STATUSES:
            return
        svc.replicas[rep.replica_id] = replace(
            rep,
            ready_at=rep.ready_at if rep.ready_at is not None else at,
            last_ready_at=at,
            not_ready_at=None,
            not_ready_reason="",
            url=rep.url or ev.url,
        )
        info = svc.versions.get(rep.version)
        if info is not None:
            svc.versions[rep.version] = replace(
                info,
                first_ready_at=info.first_ready_at if info.first_ready_at is not None else at,
                consecutive_failures=0,
                retry_failures=0,
            )

    def probe_failed(self, ev: ProbeFailed, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        svc.replicas[rep.replica_id] = replace(
            rep, probe_failures=rep.probe_failures + 1, last_probe_failure=ev.reason
        )

    def not_ready(self, ev: ReplicaNotReady, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        if rep.ready_at is None or rep.not_ready_at is not None or rep.termination is not None:
            return
        svc.replicas[rep.replica_id] = replace(rep, not_ready_at=at, not_ready_reason=ev.reason)

    def replica_failed(self, ev: ReplicaFailed, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        if rep.termination is not None or replica_status(rep) in REPLACED_STATUSES:
            return  # draining replicas stop answering; the first failure wins
        rep = replace(rep, failed=Failure(status=ev.status, reason=ev.reason, at=at))
        svc.replicas[rep.replica_id] = rep
        self.count_failure(svc, rep, at, blocking=True)
