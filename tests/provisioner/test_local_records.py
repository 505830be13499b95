"""The local provider's records on disk keep one encoding: a restarted provider reads what an
older one wrote, and writes what it read back byte for byte (ProcessRecord moved no field)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from libs.events.types import Placement
from services.provisioner.clouds.local_records import (
    InstanceRecord,
    NodeRecord,
    encode_record,
    load_record,
    save_record,
)

# Literal copies of what save_record wrote before NodeRecord and InstanceRecord shared a base.
WORKER_JSON = (
    b'{"rank":1,"pid":4242,"pid_started_at":1764700000.25,"netns_inode":4026532999,'
    b'"netns":"stratus-ab12-w1","veth_host":"sv-ab12-1h","veth_ns":"sv-ab12-1n",'
    b'"host_ip":"10.201.0.5","ns_ip":"10.201.0.6"}'
)
NETNS_JSON = (
    b'{"instance_id":"local-chat-1-deadbeef","service":"chat","replica_id":1,"version":2,'
    b'"placement":{"cloud":"local","region":"local","zone":"local-a","instance_type":"local-4x",'
    b'"accelerators":{"A100":1.0},"use_spot":true,"price_per_hour":1.5,"disk_size":100},'
    b'"mode":"netns","service_port":8080,"launched_at":1764700000.5,"lifecycle":"started",'
    b'"url":"http://10.200.0.2:8080","pid":4141,"pid_started_at":1764700001.75,'
    b'"netns_inode":4026532998,"netns":"stratus-ab12","veth_host":"sv-ab12-h","veth_ns":"sv-ab12-n",'
    b'"host_ip":"10.200.0.1","ns_ip":"10.200.0.2","socket":"","num_nodes":2,'
    b'"cluster_ip":"10.202.0.1","workers":[' + WORKER_JSON + b"]}"
)
USERNS_JSON = (
    b'{"instance_id":"local-web-3-cafe0001","service":"web","replica_id":3,"version":1,'
    b'"placement":{"cloud":"local","region":"local","zone":"","instance_type":"","accelerators":{},'
    b'"use_spot":false,"price_per_hour":0.0,"disk_size":null},"mode":"userns","service_port":9000,'
    b'"launched_at":1764700002.0,"lifecycle":"launching","url":"","pid":0,"pid_started_at":0.0,'
    b'"netns_inode":0,"netns":"","veth_host":"","veth_ns":"","host_ip":"","ns_ip":"",'
    b'"socket":"/run/user/1000/stratus-1000/web-3.sock","num_nodes":1,"cluster_ip":"","workers":[]}'
)


def test_an_old_netns_record_decodes_field_for_field(tmp_path: Path) -> None:
    (tmp_path / "record.json").write_bytes(NETNS_JSON)
    record = load_record(tmp_path / "record.json")
    assert record == InstanceRecord(
        instance_id="local-chat-1-deadbeef", service="chat", replica_id=1, version=2,
        placement=Placement(zone="local-a", instance_type="local-4x", accelerators={"A100": 1.0},
                            use_spot=True, price_per_hour=1.5, disk_size=100),
        mode="netns", service_port=8080, launched_at=1764700000.5, lifecycle="started",
        url="http://10.200.0.2:8080", pid=4141, pid_started_at=1764700001.75,
        netns_inode=4026532998, netns="stratus-ab12", veth_host="sv-ab12-h", veth_ns="sv-ab12-n",
        host_ip="10.200.0.1", ns_ip="10.200.0.2", num_nodes=2, cluster_ip="10.202.0.1",
        workers=[NodeRecord(rank=1, pid=4242, pid_started_at=1764700000.25, netns_inode=4026532999,
                            netns="stratus-ab12-w1", veth_host="sv-ab12-1h", veth_ns="sv-ab12-1n",
                            host_ip="10.201.0.5", ns_ip="10.201.0.6")],
    )  # fmt: skip


def test_a_worker_decodes_alone_as_before() -> None:
    node = msgspec.json.decode(WORKER_JSON, type=NodeRecord)
    assert (node.rank, node.pid, node.netns, node.ns_ip) == (1, 4242, "stratus-ab12-w1", "10.201.0.6")


@pytest.mark.parametrize("old", [NETNS_JSON, USERNS_JSON], ids=["netns-multinode", "userns"])
def test_the_new_code_writes_an_old_record_back_byte_identically(tmp_path: Path, old: bytes) -> None:
    record = msgspec.json.decode(old, type=InstanceRecord)
    assert encode_record(record) == old
    save_record(tmp_path / "record.json", record)
    assert (tmp_path / "record.json").read_bytes() == old


def test_a_record_built_in_code_encodes_in_the_old_layout() -> None:
    record = InstanceRecord(
        instance_id="local-web-3-cafe0001", service="web", replica_id=3, version=1,
        placement=Placement(), mode="userns", service_port=9000, launched_at=1764700002.0,
        socket="/run/user/1000/stratus-1000/web-3.sock",
    )  # fmt: skip
    assert encode_record(record) == USERNS_JSON
