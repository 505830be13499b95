from __future__ import annotations

from typing import Any

import pytest

from libs.events.types import Placement
from libs.fleet import resource_requests
from services.scheduler.placement import CatalogEntry, ZoneKey, choose_placement

CATALOG = (
    CatalogEntry(cloud="local", region="local", zone="", instance_type="local", accelerator="*",
                 on_demand_price=0.0, spot_price=0.0),
    CatalogEntry(cloud="aws", region="us-east-1", zone="a", instance_type="g5", accelerator="A10G",
                 accelerator_count=1, on_demand_price=1.0, spot_price=0.4),
    CatalogEntry(cloud="aws", region="us-east-1", zone="b", instance_type="g5", accelerator="A10G",
                 accelerator_count=1, on_demand_price=1.0, spot_price=0.4),
    CatalogEntry(cloud="aws", region="us-west-2", zone="c", instance_type="g5", accelerator="A10G",
                 accelerator_count=1, on_demand_price=1.1, spot_price=0.5),
    CatalogEntry(cloud="aws", region="us-east-1", zone="a", instance_type="p4d", accelerator="A100",
                 accelerator_count=8, on_demand_price=32.0, spot_price=None),
    CatalogEntry(cloud="gcp", region="us-central1", zone="f", instance_type="g2", accelerator="L4",
                 accelerator_count=1, on_demand_price=0.7, spot_price=0.2),
    CatalogEntry(cloud="aws", region="us-east-1", zone="a", instance_type="m6i", on_demand_price=0.1,
                 spot_price=0.03),
)  # fmt: skip

SPOT_A10G: dict[str, Any] = {"cloud": "aws", "accelerators": {"A10G": 1}, "use_spot": True}
AS = ("aws", "us-east-1", "a")
BS = ("aws", "us-east-1", "b")


def _at(zone: str, spot: bool = True) -> Placement:
    return Placement(cloud="aws", region="us-east-1", zone=zone, use_spot=spot)


CASES: list[tuple[str, dict[str, Any], dict[str, Any], tuple[str, str, str, str, bool, float] | None]] = [
    ("cloud unset: local", {"accelerators": {"A100": 8}}, {"use_spot": False},
     ("local", "local", "", "local", False, 0.0)),
    ("local spot is free too", {"cloud": "local", "use_spot": True}, {"use_spot": True},
     ("local", "local", "", "local", True, 0.0)),
    ("cheapest on-demand", {"cloud": "aws", "accelerators": {"A10G": 1}}, {"use_spot": False},
     ("aws", "us-east-1", "a", "g5", False, 1.0)),
    ("cpu only", {"cloud": "aws"}, {"use_spot": False}, ("aws", "us-east-1", "a", "m6i", False, 0.1)),
    ("cheapest spot", SPOT_A10G, {"use_spot": True}, ("aws", "us-east-1", "a", "g5", True, 0.4)),
    ("region pinned", {**SPOT_A10G, "region": "us-west-2"}, {"use_spot": True},
     ("aws", "us-west-2", "c", "g5", True, 0.5)),
    ("no spot offer", {"cloud": "aws", "accelerators": {"A100": 8}}, {"use_spot": True}, None),
    ("on-demand fallback of a spot-only spec",
     {"cloud": "aws", "accelerators": {"A100": 8}, "use_spot": True}, {"use_spot": False},
     ("aws", "us-east-1", "a", "p4d", False, 32.0)),
    ("unknown accelerator", {"cloud": "aws", "accelerators": {"H100": 8}}, {"use_spot": False}, None),
    ("any_of picks the cheapest", {"any_of": [{"cloud": "aws", "accelerators": {"A10G": 1}},
                                              {"cloud": "gcp", "accelerators": {"L4": 1}}]},
     {"use_spot": False}, ("gcp", "us-central1", "f", "g2", False, 0.7)),
    ("accelerator set picks the cheapest", {"cloud": "aws", "accelerators": {"A100": 8, "A10G": 1}},
     {"use_spot": False}, ("aws", "us-east-1", "a", "g5", False, 1.0)),
    ("ordered any_of is a preference",
     {"ordered": True, "any_of": [{"cloud": "aws", "accelerators": {"A10G": 1}},
                                  {"cloud": "gcp", "accelerators": {"L4": 1}}]},
     {"use_spot": False, "ordered": True}, ("aws", "us-east-1", "a", "g5", False, 1.0)),
    ("avoid a failed zone", SPOT_A10G, {"use_spot": True, "avoid": {AS}},
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
    ("on-demand ignores spot spread", {"cloud": "aws", "accelerators": {"A10G": 1}},
     {"use_spot": False, "spot_placer": "dynamic_fallback", "existing": [_at("a", spot=False)]},
     ("aws", "us-east-1", "a", "g5", False, 1.0)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "resources", "kwargs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_choose_placement(
    case: str,
    resources: dict[str, Any],
    kwargs: dict[str, Any],
    expected: tuple[str, str, str, str, bool, float] | None,
) -> None:
    avoid: set[ZoneKey] = kwargs.pop("avoid", set())
    got = choose_placement(resource_requests(resources), catalog=CATALOG, avoid=avoid, **kwargs)
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert (got.cloud, got.region, got.zone, got.instance_type, got.use_spot, got.price_per_hour) == expected


def test_placement_carries_the_chosen_accelerator() -> None:
    got = choose_placement(resource_requests({"accelerators": {"L4": 8}}), use_spot=False, catalog=CATALOG)
    assert got is not None and got.accelerators == {"L4": 8.0}


def test_default_catalog_prefers_local() -> None:
    got = choose_placement(resource_requests({"accelerators": {"A100": 1}, "use_spot": True}), use_spot=True)
    assert got is not None and (got.cloud, got.region, got.price_per_hour) == ("local", "local", 0.0)
