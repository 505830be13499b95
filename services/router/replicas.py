"""The replica set of one service, updatable at run time from any code path.

A :class:`ReplicaPool` is plain in-memory state: every update applies at once
(the lead drives it from NATS events). It keeps the list of *eligible*
replicas (ready, not draining, of an active version) that the load-balancing
policy chooses from, the per-replica in-flight counts, and the keep-alive
connection pool of each replica.

Replica lifecycle::

    set_ready ──► READY ──set_not_ready──► NOT_READY ──set_ready──► READY
                    │                                       ▲
                    └──drain──► DRAINING ──set_ready────────┘
    remove: from any state; in-flight requests finish, then it is forgotten.

Only READY replicas whose version is active get new requests; requests in
flight on any replica always run to completion.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.router.balance import DEFAULT_POLICY, InstanceAwareLeastLoad, Policy, make_policy
from services.router.upstream import UpstreamAddress, UpstreamPool


class ReplicaState(enum.Enum):
    READY = "READY"
    NOT_READY = "NOT_READY"
    DRAINING = "DRAINING"
    REMOVED = "REMOVED"


READY = ReplicaState.READY


class Replica:
    """One replica as the router sees it (mutated in place by the pool and the proxy)."""

    __slots__ = ("in_flight", "replica_id", "served", "state", "upstream", "version", "waiters")

    def __init__(self, replica_id: int, address: UpstreamAddress, version: int, max_idle: int) -> None:
        self.replica_id = replica_id
        self.version = version
        self.state = READY
        self.in_flight = 0
        self.served = 0  # requests dispatched to it, for tests and status
        self.upstream = UpstreamPool(address, max_idle)
        self.waiters: list[asyncio.Future[None]] = []

    @property
    def url(self) -> str:
        return self.upstream.address.url

    def __repr__(self) -> str:
        r = f"{self.replica_id}, {self.url}, v{self.version}, {self.state.value}, in_flight={self.in_flight}"
        return f"Replica({r})"


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    replica_id: int
    url: str
    version: int
    state: str
    in_flight: int
    served: int
    idle_connections: int


class ReplicaPool:
    """The replicas of one service and how new requests are spread over them."""

    def __init__(
        self, service: str, policy: str | None = DEFAULT_POLICY, *, max_idle_per_replica: int = 1024
    ) -> None:
        self.service = service
        self._policy: Policy = make_policy(policy)
        self._max_idle = max_idle_per_replica
        self._replicas: dict[int, Replica] = {}
        self._retired: dict[int, list[Replica]] = {}  # removed/replaced, requests still in flight
        self._active_versions: frozenset[int] | None = None
        self.eligible: list[Replica] = []
        self.request_count = 0
        self._listeners: list[Callable[[], None]] = []

    # -- updates ---------------------------------------------------------------
    def set_ready(self, replica_id: int, url: str, version: int = 1) -> None:
        """Add or update a replica and let it take new requests."""
        r = self._replicas.get(replica_id)
        if r is not None and r.url != url:
            self._retire(r)
            r = None
        if r is None:
            r = Replica(replica_id, UpstreamAddress.parse(url), version, self._max_idle)
            self._replicas[replica_id] = r
        r.version = version
        r.state = READY
        self._changed()

    def set_not_ready(self, replica_id: int) -> None:
        """No new requests (the replica failed its probe); in-flight ones continue."""
        self._stop(replica_id, ReplicaState.NOT_READY)

    def drain(self, replica_id: int) -> None:
        """No new requests; in-flight ones continue (see :meth:`wait_drained`)."""
        self._stop(replica_id, ReplicaState.DRAINING)

    def remove(self, replica_id: int) -> None:
        """Forget the replica; in-flight requests on it still finish."""
        r = self._replicas.pop(replica_id, None)
        if r is not None:
            self._retire(r)
            self._changed()

    def set_policy(self, name: str | None) -> None:
        """Switch the load-balancing policy (None: the default, ``least_load``)."""
        if (name or DEFAULT_POLICY) != self._policy.name:
            self._policy = make_policy(name)

    def set_capacities(self, capacity: dict[int, float]) -> None:
        """replica id -> target QPS, for ``instance_aware_least_load`` (ignored by the others)."""
        if isinstance(self._policy, InstanceAwareLeastLoad):
            self._policy.set_capacities(capacity)

    @property
    def policy(self) -> str:
        return self._policy.name

    def set_active_versions(self, versions: Iterable[int] | None) -> None:
        """Only replicas of these versions get new requests (None: every version)."""
        self._active_versions = None if versions is None else frozenset(versions)
        self._changed()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """``callback()`` runs after every change of the replica set."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    # -- queries ---------------------------------------------------------------
    def in_flight(self, replica_id: int) -> int:
        n = sum(r.in_flight for r in self._retired.get(replica_id, ()))
        r = self._replicas.get(replica_id)
        return n + (r.in_flight if r is not None else 0)

    async def wait_drained(self, replica_id: int, timeout: float) -> bool:  # noqa: ASYNC109
        """True once no request is in flight on the replica; False after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            busy = [r for r in self._all(replica_id) if r.in_flight > 0]
            if not busy:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            fut: asyncio.Future[None] = loop.create_future()
            busy[0].waiters.append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                return self.in_flight(replica_id) == 0
            finally:
                if fut in busy[0].waiters:
                    busy[0].waiters.remove(fut)

    def has_ready(self) -> bool:
        return bool(self.eligible)

    def replicas(self) -> list[ReplicaInfo]:
        return [
            ReplicaInfo(
                r.replica_id, r.url, r.version, r.state.value, r.in_flight, r.served, len(r.upstream.idle)
            )
            for r in sorted(self._replicas.values(), key=lambda r: r.replica_id)
        ]

    def take_request_count(self) -> int:
        """Requests received since the last call (for QPS sampling); resets the counter."""
        n, self.request_count = self.request_count, 0
        return n

    # -- used by the proxy -----------------------------------------------------
    def choose(self) -> Replica | None:
        return self._policy.choose(self.eligible)

    def choose_excluding(self, tried: list[Replica]) -> Replica | None:
        return self._policy.choose([r for r in self.eligible if r not in tried])

    def is_eligible(self, r: Replica) -> bool:
        return r in self.eligible

    def replica_idle(self, r: Replica) -> None:
        """The proxy saw ``r.in_flight`` drop to 0 on a replica that is not READY."""
        waiters, r.waiters = r.waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)
        if r.state is ReplicaState.REMOVED:
            rs = self._retired.get(r.replica_id)
            if rs is not None and r in rs:
                rs.remove(r)
                if not rs:
                    del self._retired[r.replica_id]

    def upstream_pools(self) -> list[UpstreamPool]:
        pools = [r.upstream for r in self._replicas.values()]
        pools += [r.upstream for rs in self._retired.values() for r in rs]
        return pools

    def close(self) -> None:
        """Close every idle upstream connection and stop pooling new ones."""
        for p in self.upstream_pools():
            p.close()

    # -- internals ---------------------------------------------------------------
    def _all(self, replica_id: int) -> list[Replica]:
        rs = list(self._retired.get(replica_id, ()))
        r = self._replicas.get(replica_id)
        if r is not None:
            rs.append(r)
        return rs

    def _stop(self, replica_id: int, state: ReplicaState) -> None:
        r = self._replicas.get(replica_id)
        if r is None or r.state is state:
            return
        r.state = state
        r.upstream.close_idle()
        self._changed()
        if r.in_flight == 0:
            self.replica_idle(r)

    def _retire(self, r: Replica) -> None:
        r.state = ReplicaState.REMOVED
        r.upstream.close()
        if r.in_flight:
            self._retired.setdefault(r.replica_id, []).append(r)
        else:
            self.replica_idle(r)

    def _changed(self) -> None:
        active = self._active_versions
        self.eligible = [
            r
            for _, r in sorted(self._replicas.items())
            if r.state is READY and (active is None or r.version in active)
        ]
        for cb in list(self._listeners):
            cb()
