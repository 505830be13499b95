"""The local provider's on-disk instance records: what a restarted provider rediscovers.

One JSON file per replica, replaced atomically, so a crash leaves the old or the new record,
never half of one. Records hold no env values (they may be secret).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgspec

from libs.events.types import Placement

Mode = Literal["netns", "userns"]
# launching: record written, process not started yet (a crash here leaves it for cleanup);
# started: the launcher runs (or ran); preempted / terminated: ended on our side.
Lifecycle = Literal["launching", "started", "preempted", "terminated"]


class NodeRecord(msgspec.Struct, kw_only=True):
    """A worker node (rank >= 1) of a multi-node replica (local_nodes); the head is the record."""

    rank: int
    pid: int = 0
    pid_started_at: float = 0.0
    netns_inode: int = 0
    netns: str = ""
    veth_host: str = ""
    veth_ns: str = ""
    host_ip: str = ""
    ns_ip: str = ""


class InstanceRecord(msgspec.Struct, kw_only=True):
    instance_id: str
    service: str
    replica_id: int
    version: int
    placement: Placement
    mode: Mode
    service_port: int
    launched_at: float
    lifecycle: Lifecycle = "launching"
    url: str = ""
    # The launcher (session leader of the replica's processes); started_at tells pid reuse apart.
    pid: int = 0
    pid_started_at: float = 0.0
    netns_inode: int = 0
    # netns mode
    netns: str = ""
    veth_host: str = ""
    veth_ns: str = ""
    host_ip: str = ""
    ns_ip: str = ""
    # userns mode
    socket: str = ""
    # multi-node replicas (netns mode): the head's address on the nodes' bridge, and the workers
    num_nodes: int = 1
    cluster_ip: str = ""
    workers: list[NodeRecord] = []


def save_record(path: Path, record: InstanceRecord) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(msgspec.json.encode(record))
    os.replace(tmp, path)


def load_record(path: Path) -> InstanceRecord | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return msgspec.json.decode(data, type=InstanceRecord)
    except msgspec.DecodeError:
        # A record we cannot read is one we cannot manage; treat it as absent rather than
        # failing every listing (save_record's rename means this is not a torn write).
        return None


def iter_records(replicas_dir: Path) -> Iterator[InstanceRecord]:
    try:
        entries = sorted(replicas_dir.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        record = load_record(entry / "record.json")
        if record is not None:
            yield record
