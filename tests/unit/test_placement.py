"""libs.placement: the cheapest satisfying offer over the usable clouds, blocks, avoidance (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from libs.catalog import Offer
from libs.events.types import Placement
from libs.fleet import resource_requests
from libs.fleet.state import ZoneEvent
from libs.placement import Block, Chosen, Unplaceable, ZoneKey, blocks_from, place


def _o(cloud: str, region: str, zone: str, itype: str, acc: str | None, n: float, od: float | None,
       spot: float | None, cpus: float = 8, mem: float = 32) -> Offer:
    return Offer(cloud=cloud, region=region, zone=zone, instance_type=itype, accelerator=acc,
                 accelerator_count=n, vcpus=cpus, memory_gib=mem, price=od, spot_price=spot)  # fmt: skip


CATALOG = (
    _o("aws", "us-east-1", "a", "g5", "A10G", 1, 1.0, 0.4),
    _o("aws", "us-east-1", "b", "g5", "A10G", 1, 1.0, 0.4),
    _o("aws", "us-west-2", "c", "g5", "A10G", 1, 1.1, 0.5),
    _o("aws", "us-east-1", "a", "p4d", "A100", 8, 32.0, None, cpus=96, mem=1152),
    _o("gcp", "us-central1", "f", "g2", "L4", 1, 0.7, 0.2),
    _o("gcp", "us-central1", "f", "n1-standard-4", None, 0, 0.19, 0.04, cpus=4, mem=15),
    _o("gcp", "us-central1", "f", "n1-highmem-8", None, 0, 0.47, 0.1, cpus=8, mem=52),
    _o("gcp", "us-central1", "f", "n1-standard-8", "T4", 1, 0.73, 0.2, cpus=8, mem=30),
    _o("gcp", "us-central1", "f", "n1-highmem-8", "T4", 1, 0.82, 0.25, cpus=8, mem=52),
    _o("azure", "eastus", "", "NC24ads", "A100", 1, 3.9, 1.47, cpus=24, mem=220),
    _o("gcp", "us-central1", "f", "a2-highgpu-1g", "A100", 1, 3.67, 1.8, cpus=12, mem=85),
    _o("aws", "us-east-1", "a", "p5e", "H200", 8, None, 19.4, cpus=192, mem=2048),
)
ALL = ("aws", "gcp", "azure")
SPOT_A10G: dict[str, Any] = {"cloud": "aws", "accelerators": {"A10G": 1}, "use_spot": True}
AS = ("aws", "us-east-1", "a")
BS = ("aws", "us-east-1", "b")


def _at(zone: str, spot: bool = True) -> Placement:
    return Placement(cloud="aws", region="us-east-1", zone=zone, use_spot=spot)


Expected = tuple[str, str, str, str, bool, float] | None
CASES: list[tuple[str, dict[str, Any], dict[str, Any], Expected]] = [
    ("no cloud, none enabled: local", {"accelerators": {"A100": 8}}, {"use_spot": False, "clouds": ()},
     ("local", "local", "", "local", False, 0.0)),
    ("cloud: local even with clouds enabled", {"cloud": "local", "use_spot": True}, {"use_spot": True},
     ("local", "local", "", "local", True, 0.0)),
    ("no cloud, clouds enabled: cheapest across them", {"accelerators": {"A100": 1}}, {"use_spot": False},
     ("gcp", "us-central1", "f", "a2-highgpu-1g", False, 3.67)),
    ("no cloud, spot: cheapest spot across clouds", {"accelerators": {"A100": 1}, "use_spot": True},
     {"use_spot": True}, ("azure", "eastus", "", "NC24ads", True, 1.47)),
    ("only usable clouds are considered", {"accelerators": {"A100": 1}},
     {"use_spot": False, "clouds": ("azure",)}, ("azure", "eastus", "", "NC24ads", False, 3.9)),
    ("no usable cloud has it", {"accelerators": "A10G"}, {"use_spot": False, "clouds": ("azure",)}, None),
    ("cheapest on-demand", {"cloud": "aws", "accelerators": {"A10G": 1}}, {"use_spot": False},
     ("aws", "us-east-1", "a", "g5", False, 1.0)),
    ("cpu only: cheapest CPU offer", {"cloud": "gcp"}, {"use_spot": False},
     ("gcp", "us-central1", "f", "n1-standard-4", False, 0.19)),
    ("cpus 8+ rules out 4 vCPUs", {"cloud": "gcp", "cpus": "8+"}, {"use_spot": False},
     ("gcp", "us-central1", "f", "n1-highmem-8", False, 0.47)),
    ("exact cpus", {"accelerators": "T4:1", "cpus": "8"}, {"use_spot": False},
     ("gcp", "us-central1", "f", "n1-standard-8", False, 0.73)),
    ("memory 32+ picks the bigger host", {"accelerators": "T4", "memory": "32+"}, {"use_spot": False},
     ("gcp", "us-central1", "f", "n1-highmem-8", False, 0.82)),
    ("memory too large: nothing", {"accelerators": "T4", "memory": "512+"}, {"use_spot": False}, None),
    ("instance_type pins", {"instance_type": "p4d"}, {"use_spot": False},
     ("aws", "us-east-1", "a", "p4d", False, 32.0)),
    ("cheapest spot", SPOT_A10G, {"use_spot": True}, ("aws", "us-east-1", "a", "g5", True, 0.4)),
    ("region pinned", {**SPOT_A10G, "region": "us-west-2"}, {"use_spot": True},
     ("aws", "us-west-2", "c", "g5", True, 0.5)),
    ("zone pinned", {**SPOT_A10G, "zone": "b"}, {"use_spot": True},
     ("aws", "us-east-1", "b", "g5", True, 0.4)),
    ("no spot offer", {"cloud": "aws", "accelerators": {"A100": 8}}, {"use_spot": True}, None),
    ("no on-demand price", {"accelerators": {"H200": 8}}, {"use_spot": False}, None),
    ("spot price without on-demand", {"accelerators": {"H200": 8}}, {"use_spot": True},
     ("aws", "us-east-1", "a", "p5e", True, 19.4)),
    ("on-demand fallback of a spot-only spec",
     {"cloud": "aws", "accelerators": {"A100": 8}, "use_spot": True}, {"use_spot": False},
     ("aws", "us-east-1", "a", "p4d", False, 32.0)),
    ("unknown accelerator", {"cloud": "aws", "accelerators": {"H100": 8}}, {"use_spot": False}, None),
    ("accelerator names compare case-insensitively", {"accelerators": "a10g"}, {"use_spot": False},
     ("aws", "us-east-1", "a", "g5", False, 1.0)),
    ("any_of picks the cheapest", {"any_of": [{"cloud": "aws", "accelerators": {"A10G": 1}},
                                              {"cloud": "gcp", "accelerators": {"L4": 1}}]},
     {"use_spot": False}, ("gcp", "us-central1", "f", "g2", False, 0.7)),
    ("accelerator set picks the cheapest", {"cloud": "aws", "accelerators": {"A100": 8, "A10G": 1}},
     {"use_spot": False}, ("aws", "us-east-1", "a", "g5", False, 1.0)),
    ("ordered any_of is a preference",
     {"ordered": True, "any_of": [{"cloud": "aws", "accelerators": {"A10G": 1}},
                                  {"cloud": "gcp", "accelerators": {"L4": 1}}]},
     {"use_spot": False, "ordered": True}, ("aws", "us-east-1", "a", "g5", False, 1.0)),
    ("ordered falls through to the next feasible choice",
     {"ordered": True, "any_of": [{"accelerators": {"H100": 8}}, {"accelerators": {"L4": 1}}]},
     {"use_spot": False, "ordered": True}, ("gcp", "us-central1", "f", "g2", False, 0.7)),
    ("pinned to a cloud that is not enabled", {"cloud": "aws", "accelerators": "A10G"},
     {"use_spot": False, "clouds": ("gcp",)}, None),
    ("avoid a preempted zone", SPOT_A10G, {"use_spot": True, "avoid": {AS}},
     ("aws", "us-east-1", "b", "g5", True, 0.4)),
    ("avoidance is soft", SPOT_A10G, {"use_spot": True, "avoid": {AS, BS, ("aws", "us-west-2", "c")}},
     ("aws", "us-east-1", "a", "g5", True, 0.4)),
    ("dynamic_fallback spreads spot", SPOT_A10G,
     {"use_spot": True, "spot_placer": "dynamic_fallback", "existing": [_at("a")]},
     ("aws", "us-east-1", "b", "g5", True, 0.4)),
    ("spread pays more rather than stack", SPOT_A10G,
     {"use_spot": True, "spot_placer": "dynamic_fallback", "existing": [_at("a"), _at("b")]},
     ("aws", "us-west-2", "c", "g5", True, 0.5)),
    ("without the placer spot stacks on price", SPOT_A10G,
     {"use_spot": True, "existing": [_at("a"), _at("b")]},
     ("aws", "us-east-1", "a", "g5", True, 0.4)),
    ("capacity block: next cheapest zone", SPOT_A10G,
     {"use_spot": True, "blocks": [Block(cloud="aws", region="us-east-1", zone="a", instance_type="g5",
                                         use_spot=True, kind="capacity", until=9e9)]},
     ("aws", "us-east-1", "b", "g5", True, 0.4)),
    ("a capacity block is per market", SPOT_A10G,
     {"use_spot": True, "blocks": [Block(cloud="aws", region="us-east-1", zone="a", instance_type="g5",
                                         use_spot=False, kind="capacity", until=9e9)]},
     ("aws", "us-east-1", "a", "g5", True, 0.4)),
    ("quota block: another region", SPOT_A10G,
     {"use_spot": True, "blocks": [Block(cloud="aws", region="us-east-1", use_spot=True, kind="quota",
                                         until=9e9)]},
     ("aws", "us-west-2", "c", "g5", True, 0.5)),
    ("quota on azure: another cloud", {"accelerators": {"A100": 1}, "use_spot": True},
     {"use_spot": True, "blocks": [Block(cloud="azure", region="eastus", use_spot=True, kind="quota",
                                         until=9e9)]},
     ("gcp", "us-central1", "f", "a2-highgpu-1g", True, 1.8)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "resources", "kwargs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_place(case: str, resources: dict[str, Any], kwargs: dict[str, Any], expected: Expected) -> None:
    avoid: set[ZoneKey] = kwargs.pop("avoid", set())
    clouds = kwargs.pop("clouds", ALL)
    got = place(resource_requests(resources), CATALOG, clouds=clouds, avoid=avoid, **kwargs)
    if expected is None:
        assert isinstance(got, Unplaceable) and got.reason
        return
    assert isinstance(got, Chosen), got
    p = got.placement
    assert (p.cloud, p.region, p.zone, p.instance_type, p.use_spot, p.price_per_hour) == expected


def test_placement_carries_the_chosen_accelerator_and_why() -> None:
    got = place(resource_requests({"accelerators": {"L4": 1}}), CATALOG, use_spot=False, clouds=ALL)
    assert isinstance(got, Chosen) and got.placement.accelerators == {"L4": 1.0}
    assert got.reason.startswith("gcp/us-central1/f g2 on-demand at $0.7")


def test_not_enabled_reason_names_the_cloud_and_why() -> None:
    got = place(resource_requests({"cloud": "aws", "accelerators": "A10G"}), CATALOG, use_spot=False,
                clouds=("gcp",), disabled={"aws": "no credentials: run `aws configure`"})  # fmt: skip
    assert isinstance(got, Unplaceable)
    assert "cloud aws is not enabled (no credentials: run `aws configure`)" in got.reason


def test_unsatisfiable_reason_says_what_the_catalog_has() -> None:
    l4 = resource_requests({"cloud": "gcp", "accelerators": "L4:8"})
    got = place(l4, CATALOG, use_spot=False, clouds=ALL)
    assert isinstance(got, Unplaceable)
    assert got.reason == "L4:8 on gcp: no offer; gcp has L4 in counts 1"
    got = place(resource_requests({"cloud": "aws"}), CATALOG, use_spot=False, clouds=ALL)
    assert isinstance(got, Unplaceable) and "no CPU-only instance type on aws" in got.reason
    got = place(resource_requests({"cpus": "2"}), CATALOG, use_spot=False, clouds=("aws", "azure"))
    assert isinstance(got, Unplaceable) and got.reason.startswith(
        "CPU only on any cloud, cpus 2: no offer; the catalog lists no CPU-only instance type on aws "
        "(GPU instances only); to run it on aws, set `instance_type: "
    )
    assert "no CPU-only instance type on azure" in got.reason
    assert got.reason.endswith("(`cloud: local` runs it on this machine)")


def test_everything_blocked_says_when_it_retries() -> None:
    blocks = [Block(cloud="aws", region=r, use_spot=True, kind="quota", until=u, message="VcpuLimitExceeded")
              for r, u in (("us-east-1", 2000.0), ("us-west-2", 1500.0))]  # fmt: skip
    got = place(resource_requests(SPOT_A10G), CATALOG, use_spot=True, clouds=ALL, blocks=blocks)
    assert isinstance(got, Unplaceable) and got.retry_at == 1500.0
    assert got.reason.startswith("every offer (3) failed recently: aws/us-east-1: quota (VcpuLimitExceeded)")


def test_blocks_expire_and_local_is_never_blocked() -> None:
    evs = [
        ZoneEvent(cloud="aws", region="us-east-1", zone="a", kind="capacity", use_spot=True, at=100.0,
                  instance_type="g5"),
        ZoneEvent(cloud="aws", region="us-west-2", zone="c", kind="quota", use_spot=False, at=500.0),
        ZoneEvent(cloud="local", region="local", zone="", kind="capacity", use_spot=False, at=500.0),
        ZoneEvent(cloud="aws", region="us-east-1", zone="b", kind="preempted", use_spot=True, at=500.0),
    ]  # fmt: skip
    got = blocks_from(evs, now=700.0, retry_seconds=600.0)
    assert [(b.kind, b.region, b.zone, b.instance_type, b.until) for b in got] == [
        ("quota", "us-west-2", "", "", 1100.0)
    ]  # the capacity failure at 100 expired at 700; local and preemptions never block
    got = blocks_from(evs, now=650.0, retry_seconds=600.0)
    assert [(b.kind, b.zone, b.instance_type) for b in got] == [("capacity", "a", "g5"), ("quota", "", "")]


def test_a_parsed_spec_places_over_the_shipped_catalog() -> None:
    from libs.catalog import load_catalog
    from libs.fleet import service_policy
    from libs.spec import load_spec, spec_to_dict

    yaml = (
        "service:\n  readiness_probe: /\n  replicas: 1\n"
        "resources:\n  ports: 8080\n  accelerators: [H100:8, A100:8]\n  cpus: 96+\n  disk_size: 512\nrun: x\n"
    )
    policy = service_policy(spec_to_dict(load_spec(yaml)))
    assert policy.ordered and [r.cpus for r in policy.resources] == ["96+", "96+"]
    offers = load_catalog().offers
    got = place(policy.resources, offers, use_spot=False, clouds=ALL, ordered=policy.ordered)
    assert isinstance(got, Chosen)
    # The list is a preference: H100:8 although A100:8 is cheaper; the cheapest H100:8 with 96+ vCPUs.
    h100 = [o.price for o in offers if o.accelerator == "H100" and o.accelerator_count == 8 and o.price
            and (o.vcpus or 0) >= 96]  # fmt: skip
    assert got.placement.accelerators == {"H100": 8.0} and got.placement.price_per_hour == min(h100)
    assert got.placement.disk_size == 512  # passed through, not priced
