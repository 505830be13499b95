"""The local provider's simulated spot zones: the trace file, capacity over time, launches
above capacity refused, and the youngest spot instances above capacity chosen for preemption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from libs.catalog import load_catalog
from libs.catalog.errors import CatalogDataError
from libs.events.types import Placement
from libs.fleet.policy import ResourceRequest
from libs.placement.spot_local_zones import excess_instances, parse_zone_trace, read_zone_trace
from libs.placement.spot_policy import spot_zones
from services.provisioner.clouds.errors import CapacityError
from services.provisioner.clouds.local_records import InstanceRecord, save_record
from services.provisioner.clouds.local_zones import LocalZones

TRACE = {"tick_seconds": 2.0, "zones": {"z-a": [2, 2, 0], "z-b": [1]}}


def test_capacity_follows_the_ticks_and_the_last_value_holds() -> None:
    t = parse_zone_trace(json.dumps(TRACE), "t")
    assert [t.capacity("z-a", s) for s in (0.0, 3.9, 4.0, 100.0)] == [2, 2, 0, 0]
    assert t.capacity("z-b", 50.0) == 1 and t.capacity("elsewhere", 0.0) is None


@pytest.mark.parametrize(
    "text",
    ["[]", '{"zones": {"a": [1]}}', '{"tick_seconds": 0, "zones": {"a": [1]}}',
     '{"tick_seconds": 1, "zones": {"a": []}}', '{"tick_seconds": 1, "zones": {"a": [-1]}}',
     '{"tick_seconds": 1, "zones": {"a": [true]}}', "nope"],
)  # fmt: skip
def test_a_bad_trace_says_what_is_wrong(text: str) -> None:
    with pytest.raises(CatalogDataError):
        parse_zone_trace(text, "t")


def test_the_youngest_above_capacity_are_preempted() -> None:
    t = parse_zone_trace(json.dumps(TRACE), "t")
    running = [("i1", "z-a", 1.0), ("i2", "z-a", 2.0), ("i3", "z-b", 1.0), ("i4", "other", 0.0)]
    assert excess_instances(t, 0.0, running) == []
    assert sorted(excess_instances(t, 4.0, running)) == ["i1", "i2"]
    assert excess_instances(t, 0.0, [*running, ("i5", "z-b", 5.0)]) == ["i5"]


def test_the_catalog_lists_the_zones_and_the_spot_policy_sees_them(tmp_path: Path) -> None:
    assert not [o for o in load_catalog(tmp_path).offers if o.cloud == "local"]
    (tmp_path / "local-zones.json").write_text(json.dumps(TRACE))
    local = [o for o in load_catalog(tmp_path).offers if o.cloud == "local"]
    assert [o.zone for o in local] == ["z-a", "z-b"] and all(o.spot_price == 0.0 for o in local)
    zones = spot_zones([ResourceRequest(use_spot=True)], local, clouds=())
    assert zones == [("local", "local", "z-a"), ("local", "local", "z-b")]
    assert read_zone_trace(tmp_path / "missing.json") is None


def _record(tmp: Path, iid: str, rid: int, zone: str, at: float, spot: bool = True) -> None:
    rec = InstanceRecord(instance_id=iid, service="s", replica_id=rid, version=1, launched_at=at,
                         placement=Placement(cloud="local", region="local", zone=zone, use_spot=spot),
                         mode="userns", service_port=8080)  # fmt: skip
    rec.lifecycle = "started"
    path = tmp / "replicas" / f"s-{rid}" / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_record(path, rec)


def test_the_provider_refuses_a_launch_into_a_full_zone(tmp_path: Path) -> None:
    (tmp_path / "zones.json").write_text(json.dumps(TRACE))
    zones = LocalZones(tmp_path / "zones.json", tmp_path / "replicas")
    where = Placement(cloud="local", region="local", zone="z-b", use_spot=True)
    assert zones.over_capacity(now=0.0) == []  # the clock starts at the first traced launch
    zones.check_launch(where, now=100.0)
    _record(tmp_path, "s-1-x", 1, "z-b", 100.0)
    with pytest.raises(CapacityError, match="z-b"):
        zones.check_launch(where, now=101.0)
    zones.check_launch(Placement(cloud="local", region="local", zone="z-b", use_spot=False), now=101.0)
    _record(tmp_path, "s-2-x", 2, "z-a", 101.0)
    _record(tmp_path, "s-3-x", 3, "z-a", 102.0)
    assert zones.over_capacity(now=102.0) == []
    assert sorted(zones.over_capacity(now=104.5)) == ["s-2-x", "s-3-x"]  # z-a empties at tick 2
