"""A multi-node replica's price is its offer's price once per node: in the placement the
scheduler records, its reason, and the plan ``up`` shows; the ranking is the same (pure)."""

from __future__ import annotations

from fleet_builders import build, spec

from libs.catalog import Offer
from libs.fleet.policy import ResourceRequest
from libs.fleet.state import CloudsState
from libs.placement import Chosen, place
from services.scheduler.plan import SchedulerConfig, ScheduleReplica, plan

CATALOG = (
    Offer(cloud="aws", region="us-east-1", zone="us-east-1a", instance_type="g5.xlarge", accelerator="A10G",
          accelerator_count=1, vcpus=4, memory_gib=16, price=1.25, spot_price=0.5),
    Offer(cloud="gcp", region="us-central1", zone="us-central1-a", instance_type="g2-standard-4",
          accelerator="L4", accelerator_count=1, vcpus=4, memory_gib=16, price=0.75, spot_price=0.25),
)  # fmt: skip


def test_the_price_is_per_node_times_the_nodes_and_the_ranking_stays() -> None:
    requests = (ResourceRequest(accelerators={"A10G": 1}), ResourceRequest(accelerators={"L4": 1}))
    one = place(requests, CATALOG, use_spot=False, clouds=("aws", "gcp"))
    three = place(requests, CATALOG, use_spot=False, clouds=("aws", "gcp"), num_nodes=3)
    assert isinstance(one, Chosen) and isinstance(three, Chosen)
    assert one.placement.instance_type == three.placement.instance_type == "g2-standard-4"
    assert (one.placement.price_per_hour, three.placement.price_per_hour) == (0.75, 2.25)
    assert "at $2.25/h (3 nodes at $0.75/h)" in three.reason
    assert "nodes" not in one.reason


def test_the_scheduler_records_the_replica_price() -> None:
    the_spec = spec(1, cloud="aws", accelerators={"A10G": 1})
    config = SchedulerConfig(retry_backoff_seconds=0.0, catalog=CATALOG)
    clouds = CloudsState(enabled=("aws",))
    for nodes, price in ((1, 1.25), (2, 2.5)):
        svc = build({**the_spec, "num_nodes": nodes})
        (action,) = [a for a in plan(svc, 100.0, config, clouds) if isinstance(a, ScheduleReplica)]
        assert action.placement.price_per_hour == price
