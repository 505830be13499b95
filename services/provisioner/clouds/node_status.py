"""A multi-node replica's state from its nodes' states (pure; the cloud providers share it).

As in SkyPilot, a multi-node replica fails with any of its nodes, so the first rule that
matches, in this order, decides:

any node PREEMPTED                          -> PREEMPTED (the cloud took a node back)
the head not PROVISIONING or RUNNING        -> the head's state (gone, exited, being deleted)
a worker being deleted by Stratus           -> TERMINATED
a worker gone (NOT_FOUND), exited, stopped  -> EXITED, the detail naming the node
every node RUNNING                          -> RUNNING
otherwise                                   -> PROVISIONING, naming a node still starting

Every detail names the node it comes from ("node 2 of 3 (<its id>): ...").
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import InstanceState, InstanceStatus

_LIVE = frozenset({InstanceState.PROVISIONING, InstanceState.RUNNING})


def _named(
    rank: int, count: int, node: str, status: InstanceStatus, *, state: InstanceState | None = None
) -> InstanceStatus:
    detail = f"node {rank} of {count} ({node}): {status.detail or status.state.value.lower()}"
    return InstanceStatus(state=state or status.state, exit_code=status.exit_code, detail=detail)


def aggregate_nodes(nodes: Sequence[tuple[str, InstanceStatus]]) -> InstanceStatus:
    """The replica's status from ``(node id, status)`` by rank, the head first."""
    if not nodes:
        raise ValueError("a replica has at least one node")
    count = len(nodes)
    if count == 1:
        return nodes[0][1]
    for rank, (node, status) in enumerate(nodes):
        if status.state == InstanceState.PREEMPTED:
            return _named(rank, count, node, status)
    head_id, head = nodes[0]
    if head.state not in _LIVE:
        return _named(0, count, head_id, head)
    workers = list(enumerate(nodes))[1:]
    for rank, (node, status) in workers:
        if status.state == InstanceState.TERMINATED:
            return _named(rank, count, node, status)
    for rank, (node, status) in workers:
        if status.state == InstanceState.NOT_FOUND:
            gone = InstanceStatus(state=InstanceState.EXITED, detail=f"the node is gone ({status.detail})")
            return _named(rank, count, node, gone)
        if status.state not in _LIVE:
            return _named(rank, count, node, status, state=InstanceState.EXITED)
    starting = next(((r, n, s) for r, (n, s) in enumerate(nodes) if s.state != InstanceState.RUNNING), None)
    if starting is None:
        return InstanceStatus(state=InstanceState.RUNNING)
    rank, node, status = starting
    return _named(rank, count, node, status, state=InstanceState.PROVISIONING)
