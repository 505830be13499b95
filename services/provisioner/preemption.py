"""Acting on ``PreemptionRequested`` (``stratus debug preempt``): level-triggered, once.

The fold marks a live replica whose preemption was requested (``preemption_requested_at``).
Every reconcile (the bus message, the periodic resync, a provisioner's start) looks at those
still running and acts on each once, whoever runs: a bus message missed while every provisioner
was down (or lost by NATS) is acted on when one starts.

Once: the acting instance first appends ``PreemptionStarted(claimed_by=<its lease's holder>)``
to the replica stream with the version it read as the expected version; of two instances, one
appends and the other sees a conflict, re-reads and finds the claim. A claim whose holder's
lease is dead (it crashed between its claim and the provider's call) is taken over; the
provider's ``preempt`` is idempotent. Once the provider has preempted the instance, the monitor
records ``Preempted`` and the scheduler replaces the replica.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from libs.events import errors as events_errors
from libs.events.envelope import RecordedEvent
from libs.events.errors import ConcurrencyConflict
from libs.events.leases import live_holder
from libs.events.store import EventStore
from libs.events.types import (
    Preempted,
    PreemptionRequested,
    PreemptionStarted,
    ReplicaProcessExited,
    ReplicaTerminated,
    ReplicaTerminationRequested,
    replica_stream,
)
from libs.fleet.state import ReplicaState, ServiceState

from .clouds import errors as clouds_errors
from .clouds.base import Provider
from .clouds.errors import ProviderError

log = logging.getLogger("stratus.provisioner")

# Re-reads after a conflict (another event on the replica stream meanwhile) before leaving it to
# the next reconcile.
CLAIM_ATTEMPTS = 3


_ENDED = (Preempted, ReplicaProcessExited, ReplicaTerminated, ReplicaTerminationRequested)


def wants_preemption(r: ReplicaState) -> bool:
    """Preemption requested, and the replica still runs (launched, not ended, not going away)."""
    return (
        r.preemption_requested_at is not None and r.launched_at is not None and bool(r.instance_id)
        and r.exited is None and r.preempted_at is None and r.terminated_at is None
        and r.termination is None
    )  # fmt: skip


def pending(svc: ServiceState) -> list[ReplicaState]:
    return [r for r in svc.replicas.values() if wants_preemption(r)]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the replica stream says about acting on its preemption now."""

    act: bool  # claim (append PreemptionStarted) and call the provider
    claimed: bool = False  # the claim is already ours: call the provider again, append nothing
    holder: str = ""  # another instance's claim: act only if its lease is dead


def decide(records: Sequence[RecordedEvent], instance_id: str, me: str) -> Decision:
    """Pure: from the replica stream's events, whether to act on the preemption of ``instance_id``."""
    requested = False
    holder = ""
    for rec in records:
        ev = rec.event
        if isinstance(ev, PreemptionRequested):
            requested = True
        elif isinstance(ev, PreemptionStarted) and ev.instance_id == instance_id:
            holder = ev.claimed_by
        elif isinstance(ev, _ENDED) and getattr(ev, "instance_id", "") in (instance_id, ""):
            return Decision(act=False)  # it ended or is going away: nothing to preempt
    if not requested:
        return Decision(act=False)
    if not holder:
        return Decision(act=True)
    if holder == me:
        return Decision(act=True, claimed=True)
    return Decision(act=False, holder=holder)


class Preemptions:
    """``store``: the host's store (read when used); ``me``: this instance's lease holder."""

    def __init__(self, store: Callable[[], EventStore], me: Callable[[], str], provider: Provider) -> None:
        self._store = store
        self._me = me
        self.provider = provider
        # Acted on by this process (the provider called, or given up on): not again from here.
        self._acted: set[tuple[str, int, str]] = set()

    async def act_on(self, svc: ServiceState) -> None:
        for r in pending(svc):
            await self.act(svc.name, r)

    async def act(self, service: str, r: ReplicaState) -> None:
        key = (service, r.replica_id, r.instance_id)
        if key in self._acted or not await self._claim(service, r):
            return
        self._acted.add(key)
        log.info("preempting %s replica %s (%s), as requested", service, r.replica_id, r.instance_id)
        try:
            await self.provider.preempt(r.instance_id)
        except clouds_errors.TransientError as exc:  # the cloud's tree, not libs.events': translate
            self._acted.discard(key)  # ours to retry: the claim stays ours
            raise events_errors.TransientError(f"preempt {service}/{r.replica_id}: {exc}") from exc
        except ProviderError as exc:
            log.error("preempt of %s replica %s failed for good: %s", service, r.replica_id, exc)
            raise events_errors.PermanentError(f"preempt {service}/{r.replica_id}: {exc}") from exc

    async def _claim(self, service: str, r: ReplicaState) -> bool:
        """True once this instance holds the claim to act on the preemption (appended now, or
        earlier by itself); False if it is done, another live instance holds it, or the stream
        kept moving."""
        store = self._store()
        stream = replica_stream(service, r.replica_id)
        me = self._me()
        for _ in range(CLAIM_ATTEMPTS):
            records = await store.read_stream(stream)
            decision = decide(records, r.instance_id, me)
            if decision.holder:
                if await live_holder(store.pool, decision.holder) is not None:
                    return False  # someone alive is acting on it
                log.info("%s replica %s: taking over the preemption claim of %s", service, r.replica_id,
                         decision.holder)  # fmt: skip
            elif not decision.act:
                return False
            elif decision.claimed:
                return True
            event = PreemptionStarted(
                service=service, replica_id=r.replica_id, instance_id=r.instance_id, claimed_by=me
            )
            try:
                await store.append(stream, [event], expected_version=records[-1].version if records else 0)
            except ConcurrencyConflict:
                continue  # another instance claimed it, or another event came: look again
            return True
        return False
