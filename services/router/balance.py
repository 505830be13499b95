"""Load-balancing policies: pure choice among candidate replicas.

A policy gets the current list of eligible candidates (anything with an
``in_flight`` count) and returns one of them, or None for an empty list. It
keeps only its own rotation counter; it never touches the candidates.

- ``least_load`` (default): fewest in-flight requests; ties are broken round
  robin (each call takes the next of the least-loaded candidates, by a
  rotating counter), so equally loaded replicas alternate.
- ``round_robin``: each candidate in turn, regardless of load.
- ``instance_aware_least_load`` (SkyServe 0.14.1): in-flight requests divided by the replica's
  target QPS (its accelerator's ``target_qps_per_replica``, set by :meth:`set_capacities`; 1.0
  when unknown, as SkyServe), so a replica rated 10 QPS takes five times the load of one
  rated 2; ties are broken round robin like ``least_load``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from services.router.errors import UnknownPolicy


class Loaded(Protocol):
    @property
    def in_flight(self) -> int: ...


T = TypeVar("T", bound=Loaded)


class Policy(Protocol):
    name: str

    def choose(self, candidates: Sequence[T]) -> T | None: ...


class RoundRobin:
    __slots__ = ("_next",)
    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[T]) -> T | None:
        n = len(candidates)
        if n == 0:
            return None
        i = self._next
        if i >= n:
            i = 0
        self._next = i + 1
        return candidates[i]


class LeastLoad:
    __slots__ = ("_next",)
    name = "least_load"

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[T]) -> T | None:
        n = len(candidates)
        if n <= 1:
            return candidates[0] if n else None
        turn = self._next
        self._next = turn + 1 if turn < 1 << 30 else 0
        if n == 2:
            a, b = candidates
            la, lb = a.in_flight, b.in_flight
            if la != lb:
                return a if la < lb else b
            return candidates[turn & 1]
        loads = [c.in_flight for c in candidates]
        least = min(loads)
        ties = loads.count(least)
        if ties == 1:
            return candidates[loads.index(least)]
        k = turn % ties  # the k-th least-loaded candidate, in list order
        for i, load in enumerate(loads):
            if load == least:
                if k == 0:
                    return candidates[i]
                k -= 1
        raise AssertionError("unreachable")


class InstanceAwareLeastLoad:
    __slots__ = ("_capacity", "_next")
    name = "instance_aware_least_load"

    def __init__(self) -> None:
        self._next = 0
        self._capacity: dict[int, float] = {}

    def set_capacities(self, capacity: dict[int, float]) -> None:
        """replica id -> its target QPS (values <= 0 count as 1.0)."""
        self._capacity = {rid: qps if qps > 0 else 1.0 for rid, qps in capacity.items()}

    def choose(self, candidates: Sequence[T]) -> T | None:
        n = len(candidates)
        if n <= 1:
            return candidates[0] if n else None
        turn = self._next
        self._next = turn + 1 if turn < 1 << 30 else 0
        loads = [c.in_flight / self._capacity.get(getattr(c, "replica_id", -1), 1.0) for c in candidates]
        least = min(loads)
        tied = [c for c, load in zip(candidates, loads, strict=True) if load == least]
        return tied[turn % len(tied)]


POLICIES: dict[str, type[RoundRobin] | type[LeastLoad] | type[InstanceAwareLeastLoad]] = {
    LeastLoad.name: LeastLoad,
    RoundRobin.name: RoundRobin,
    InstanceAwareLeastLoad.name: InstanceAwareLeastLoad,
}
DEFAULT_POLICY = LeastLoad.name


def make_policy(name: str | None) -> Policy:
    """A fresh policy object for ``name`` (None means the default, ``least_load``)."""
    cls = POLICIES.get(name or DEFAULT_POLICY)
    if cls is None:
        raise UnknownPolicy(f"unknown load-balancing policy {name!r}; expected one of {sorted(POLICIES)}")
    return cls()
