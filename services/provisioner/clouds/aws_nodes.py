"""Reading EC2 instances as replicas: one instance, or a multi-node replica's head and workers
(blocking boto3 calls: the provider runs them in a thread and translates their errors).

A multi-node replica is its head's: the head's id is the replica's instance id, its tags say
how many nodes there are (``stratus:num-nodes``) and each worker names it (``stratus:head``), so
the nodes are found again after a restart without any state of ours. ``group_nodes`` (pure)
pairs listed workers with their heads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .aws_errors import BOTO_ERRORS, error_code
from .aws_requests import LIVE_STATES, TAG_HEAD, TAG_NODE_RANK, TAG_NUM_NODES, tags_of
from .aws_states import instance_status
from .base import InstanceState, InstanceStatus
from .node_status import aggregate_nodes

NOT_FOUND_CODES = ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed")


def node_rank(desc: Mapping[str, Any]) -> int:
    """0 for a head or a single-node replica's instance."""
    text = tags_of(dict(desc)).get(TAG_NODE_RANK, "0")
    return int(text) if text.isdigit() else 0


def num_nodes(desc: Mapping[str, Any]) -> int:
    text = tags_of(dict(desc)).get(TAG_NUM_NODES, "1")
    return max(1, int(text)) if text.isdigit() else 1


def group_nodes(descs: Iterable[Mapping[str, Any]]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(head, its workers by rank) for every head or single instance among ``descs`` (pure);
    workers whose head is not among them are left out (a head is what a replica is listed by)."""
    heads: list[dict[str, Any]] = []
    workers: dict[str, list[dict[str, Any]]] = {}
    for desc in descs:
        d = dict(desc)
        if node_rank(d) == 0:
            heads.append(d)
        else:
            workers.setdefault(tags_of(d).get(TAG_HEAD, ""), []).append(d)
    return [(h, sorted(workers.get(str(h["InstanceId"]), []), key=node_rank)) for h in heads]


def describe(ec2: Any, ec2_id: str) -> dict[str, Any] | None:
    """One instance's description (None: EC2 knows no such instance)."""
    try:
        found = ec2.describe_instances(InstanceIds=[ec2_id])
    except BOTO_ERRORS as exc:
        if error_code(exc) in NOT_FOUND_CODES:
            return None
        raise
    for reservation in found.get("Reservations") or []:
        for desc in reservation.get("Instances") or []:
            if desc.get("InstanceId") == ec2_id:
                return dict(desc)
    return None


def workers_of(ec2: Any, head_id: str, *, live_only: bool = False) -> list[dict[str, Any]]:
    """The workers of head ``head_id`` EC2 still describes (terminated ones too, unless
    ``live_only``), by rank."""
    filters = [{"Name": f"tag:{TAG_HEAD}", "Values": [head_id]}]
    if live_only:
        filters.append({"Name": "instance-state-name", "Values": [*LIVE_STATES]})
    pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
    found = [
        dict(d) for page in pages for r in page.get("Reservations") or [] for d in r.get("Instances") or []
    ]
    return sorted(found, key=node_rank)


def spot_request_status(ec2: Any, request_id: str) -> str:
    try:
        found = ec2.describe_spot_instance_requests(SpotInstanceRequestIds=[request_id])
    except BOTO_ERRORS as exc:
        if error_code(exc).startswith("InvalidSpotInstanceRequestID"):
            return ""
        raise
    requests = found.get("SpotInstanceRequests") or []
    return str(requests[0].get("Status", {}).get("Code", "")) if requests else ""


def node_status(ec2: Any, desc: Mapping[str, Any]) -> InstanceStatus:
    request_id = str(desc.get("SpotInstanceRequestId") or "")
    return instance_status(desc, spot_request_status(ec2, request_id) if request_id else "")


def replica_status(ec2: Any, ec2_id: str) -> InstanceStatus:
    """The state of the replica whose (head) instance is ``ec2_id``: every node's, folded
    (``node_status.aggregate_nodes``, as the other clouds do)."""
    head = describe(ec2, ec2_id)
    if head is None:
        return InstanceStatus(state=InstanceState.NOT_FOUND, detail=f"EC2 knows no instance {ec2_id}")
    count = num_nodes(head)
    if count == 1:
        return node_status(ec2, head)
    by_rank = {node_rank(w): w for w in workers_of(ec2, ec2_id)}
    nodes = [(ec2_id, node_status(ec2, head))]
    for rank in range(1, count):
        worker = by_rank.get(rank)
        if worker is None:
            gone = InstanceStatus(state=InstanceState.NOT_FOUND, detail=f"EC2 knows no node of rank {rank}")
            nodes.append(("no EC2 instance", gone))
        else:
            nodes.append((str(worker["InstanceId"]), node_status(ec2, worker)))
    return aggregate_nodes(nodes)


def terminate_ids(ec2: Any, ids: Sequence[str]) -> None:
    """Terminate ``ids``; ones EC2 no longer knows are fine (idempotent)."""
    if not ids:
        return
    try:
        ec2.terminate_instances(InstanceIds=list(ids))
    except BOTO_ERRORS as exc:
        if error_code(exc) not in NOT_FOUND_CODES:
            raise
        if len(ids) > 1:  # one unknown id fails the whole call: the others one by one
            for one in ids:
                terminate_ids(ec2, [one])


def terminate_replica(ec2: Any, ec2_id: str) -> None:
    """Terminate the instance and, if it heads a multi-node replica, every worker of it."""
    workers = [str(w["InstanceId"]) for w in workers_of(ec2, ec2_id, live_only=True)]
    terminate_ids(ec2, [ec2_id, *workers])
