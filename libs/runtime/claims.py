"""Claims on replica streams, so several instances of a service never do one thing twice.

Launching: an instance claims a replica by appending ``ReplicaProvisioningStarted(claimed_by=
<its id>)`` with the replica stream's version as the expected version; of two instances trying
at once, one appends and the other gets ``ConcurrencyConflict`` (a transient error: its work
queue backs off and re-reads). The claimant's ``ReplicaLaunched`` / ``ReplicaLaunchFailed`` is
appended expecting the stream still at its claim, so an instance that lost its claim meanwhile
(it was paused longer than its lease) records nothing.

A claim is live while its claimant's lease (``instance_lease``, renewed every second) is; a
claim whose claimant died (crash, kill -9, partition longer than STRATUS_LEASE_TTL) is taken
over by the next instance that reconciles the replica, as a restarted provisioner always did.

Other facts about a replica (its process exited, it was preempted, terminated) are appended
with ``append_once``: only if the stream does not already hold that fact, expecting the
version read, so two instances that both observed it record it once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from libs.events.envelope import RecordedEvent
from libs.events.errors import ConcurrencyConflict
from libs.events.leases import Lease, live_holder
from libs.events.store import EventStore
from libs.events.types import (
    Event,
    Placement,
    ReplicaLaunched,
    ReplicaLaunchFailed,
    ReplicaProvisioningStarted,
    replica_stream,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claim:
    service: str
    replica_id: int
    version: int  # the replica stream's version right after the claim

    @property
    def stream(self) -> str:
        return replica_stream(self.service, self.replica_id)


class Claims:
    """``lease``: this instance's own lease (its name and holder are the instance id)."""

    def __init__(self, store: Callable[[], EventStore], lease: Lease) -> None:
        self._store = store
        self.lease = lease

    @property
    def me(self) -> str:
        return self.lease.holder

    async def claim(self, service: str, replica_id: int, placement: Placement) -> Claim | None:
        """The claim to launch this replica, or None: launched already, or another live
        instance holds the claim. Raises ConcurrencyConflict if another instance just won."""
        store = self._store()
        stream = replica_stream(service, replica_id)
        records = await store.read_stream(stream)
        version = records[-1].version if records else 0
        start: RecordedEvent | None = None
        for rec in records:
            if isinstance(rec.event, ReplicaProvisioningStarted):
                start = rec
            elif isinstance(rec.event, (ReplicaLaunched, ReplicaLaunchFailed)):
                return None  # the launch has an outcome (our projection is behind)
        if start is not None:
            assert isinstance(start.event, ReplicaProvisioningStarted)
            holder = start.event.claimed_by
            if holder == self.me:
                return Claim(service, replica_id, start.version)  # ours: retried after an error
            if holder and await live_holder(store.pool, holder) is not None:
                return None  # someone alive is launching it
            log.info(
                "%s replica %s: taking over the claim of %s",
                service,
                replica_id,
                holder or "an older version",
            )
        event = ReplicaProvisioningStarted(
            service=service, replica_id=replica_id, placement=placement, claimed_by=self.me
        )
        result = await store.append(stream, [event], expected_version=version)
        return Claim(service, replica_id, result.versions[-1])

    async def record(self, claim: Claim, event: Event) -> int | None:
        """Append the launch's outcome if the claim still stands; its position, or None."""
        try:
            result = await self._store().append(claim.stream, [event], expected_version=claim.version)
        except ConcurrencyConflict:
            log.warning(
                "%s replica %s: claim lost during the launch (taken over); %s not recorded",
                claim.service, claim.replica_id, type(event).__name__,
            )  # fmt: skip
            return None
        return result.last_position

    async def append_once(
        self,
        service: str,
        replica_id: int,
        event: Event,
        *,
        recorded: Callable[[Sequence[RecordedEvent]], bool],
    ) -> int | None:
        """Append ``event`` unless ``recorded(stream)`` says it is there; its position, or None."""
        store = self._store()
        stream = replica_stream(service, replica_id)
        for _ in range(5):
            records = await store.read_stream(stream)
            if recorded(records):
                return None
            try:
                result = await store.append(
                    stream, [event], expected_version=records[-1].version if records else 0
                )
            except ConcurrencyConflict:
                continue  # someone appended meanwhile: look again
            return result.last_position
        raise ConcurrencyConflict(stream, -1, -1)


def has(kind: type[Event], instance_id: str | None = None) -> Callable[[Sequence[RecordedEvent]], bool]:
    """A ``recorded`` test: the stream holds an event of ``kind`` (for that instance, if given)."""

    def test(records: Sequence[RecordedEvent]) -> bool:
        return any(
            isinstance(r.event, kind)
            and (instance_id is None or getattr(r.event, "instance_id", None) == instance_id)
            for r in records
        )

    return test
