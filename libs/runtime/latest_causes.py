"""The cause of the latest event folded for each service.

A reconcile woken by a bus message carries that message as its cause (``WorkQueue.add``). One
woken without a message (a periodic resync, start-up) may run first and act on the same change:
it then carries the cause of its key's latest folded event, so that what it appends is caused by,
and traced under, the change it acts on rather than starting a trace of its own.

Events with no cause of their own (appended by a loop: the autoscaler's tick decisions) are
passed over: a new service's first ScaleDecided lands right after its ServiceRequested, and a
reconcile carrying it would start the autoscaler tick's trace instead of the request's.
"""

from __future__ import annotations

from collections.abc import Sequence

from libs.events.causation import Cause, cause_of
from libs.events.envelope import RecordedEvent


class LatestCauses:
    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit  # services remembered (the least recently changed are forgotten)
        self._by_key: dict[str, Cause] = {}

    def observe(self, records: Sequence[RecordedEvent]) -> None:
        for rec in records:
            key = getattr(rec.event, "service", None)
            if isinstance(key, str) and rec.causation_id is not None:
                self._by_key.pop(key, None)  # re-insert: dict order is recency
                self._by_key[key] = cause_of(rec)
        while len(self._by_key) > self.limit:
            del self._by_key[next(iter(self._by_key))]

    def get(self, key: str) -> Cause | None:
        return self._by_key.get(key)
