"""The local provider's on-disk instance records: what a restarted provider rediscovers.

One JSON file per replica, replaced atomically, so a crash leaves the old or the new record,
never half of one. Records hold no env values (they may be secret).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

from libs.events.types import Placement

Mode = Literal["netns", "userns"]
# launching: record written, process not started yet (a crash here leaves it for cleanup);
# started: the launcher runs (or ran); preempted / terminated: ended on our side.
Lifecycle = Literal["launching", "started", "preempted", "terminated"]


class ProcessRecord(msgspec.Struct, kw_only=True):
    """What runs one node of a replica: its launcher (session leader of the node's processes;
    started_at tells pid reuse apart) and, in netns mode, the node's network namespace."""

    pid: int = 0
    pid_started_at: float = 0.0
    netns_inode: int = 0
    netns: str = ""
    veth_host: str = ""
    veth_ns: str = ""
    host_ip: str = ""
    ns_ip: str = ""


class NodeRecord(ProcessRecord, kw_only=True):
    """A worker node (rank >= 1) of a multi-node replica (local_nodes); the head is the record."""

    rank: int


class InstanceRecord(ProcessRecord, kw_only=True):
    """A replica: where it runs, its state, and its head node's process (``ProcessRecord``)."""

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
    # userns mode
    socket: str = ""
    # multi-node replicas (netns mode): the head's address on the nodes' bridge, and the workers
    num_nodes: int = 1
    cluster_ip: str = ""
    workers: list[NodeRecord] = []


def _laid_out(fields: dict[str, Any], after: str) -> dict[str, Any]:
    """``fields`` (a base's first, as msgspec orders them) with ProcessRecord's moved to stand
    after ``after``, where they stood on disk before the base held them: one layout for all files."""
    shared = ProcessRecord.__struct_fields__
    own = [name for name in fields if name not in shared]
    at = own.index(after) + 1
    return {name: fields[name] for name in [*own[:at], *shared, *own[at:]]}


def encode_record(record: InstanceRecord) -> bytes:
    fields = msgspec.to_builtins(record)
    fields["workers"] = [_laid_out(worker, "rank") for worker in fields["workers"]]
    return msgspec.json.encode(_laid_out(fields, "url"))


def save_record(path: Path, record: InstanceRecord) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(encode_record(record))
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
