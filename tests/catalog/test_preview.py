"""libs.placement.preview: what ``up`` validates and shows, over the shipped catalog (pure)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from libs.catalog import load_catalog
from libs.fleet.state import CloudsState
from libs.placement import Chosen, NoOffer, Unplaceable, preview
from libs.spec import load_spec, spec_to_dict

OFFERS = load_catalog().offers
ALL = ("aws", "gcp", "azure")


def _spec(resources: str) -> dict[str, Any]:
    text = f"service:\n  readiness_probe: /\n  replicas: 1\nresources:\n  ports: 8080\n{resources}run: x\n"
    return spec_to_dict(load_spec(text))


def test_nothing_fits_names_the_resources_and_what_the_catalog_has() -> None:
    with pytest.raises(NoOffer) as err:
        preview(_spec("  cloud: gcp\n  accelerators: L4:3\n"), OFFERS, clouds=None, allowed=ALL)
    assert str(err.value) == "L4:3 on gcp: no offer; gcp has L4 in counts 1, 2, 4, 8"
    with pytest.raises(NoOffer, match=r"azure has no L4 \(it has A10, A100, A100-80GB"):
        preview(_spec("  cloud: azure\n  accelerators: L4\n"), OFFERS, clouds=None, allowed=ALL)
    with pytest.raises(NoOffer, match=r"gcp has A100:8 in .*, not eu-nowhere1"):
        preview(
            _spec("  cloud: gcp\n  region: eu-nowhere1\n  accelerators: A100:8\n"),
            OFFERS,
            clouds=None,
            allowed=ALL,
        )
    with pytest.raises(NoOffer, match="cloud kubernetes: Stratus has no provider for it"):
        preview(_spec("  cloud: kubernetes\n  accelerators: L4\n"), OFFERS, clouds=None, allowed=ALL)


def test_any_of_is_refused_only_when_every_choice_fails() -> None:
    spec = _spec(
        "  any_of:\n    - {cloud: gcp, accelerators: L4:3}\n    - {cloud: aws, accelerators: L4:1}\n"
    )
    got = preview(spec, OFFERS, clouds=None, allowed=ALL)
    assert isinstance(got, Chosen) and got.placement.cloud == "aws"
    with pytest.raises(
        NoOffer, match=r"L4:3 on gcp: no offer.* \| L4:5 on aws: no offer; aws has L4 in counts"
    ):
        preview(
            _spec(
                "  any_of:\n    - {cloud: gcp, accelerators: L4:3}\n    - {cloud: aws, accelerators: L4:5}\n"
            ),
            OFFERS,
            clouds=None,
            allowed=ALL,
        )


def test_spot_spec_with_fallback_falls_back_to_on_demand_offers() -> None:
    spec = _spec("  accelerators: H100:8\n  use_spot: true\n  cloud: aws\n")
    spec["service"]["base_ondemand_fallback_replicas"] = 1
    # No spot price for aws H100 anywhere: the on-demand fallback replicas still have offers.
    on_demand_only = tuple(
        msgspec.structs.replace(o, spot_price=None) if o.cloud == "aws" and o.accelerator == "H100" else o
        for o in OFFERS
    )
    with pytest.raises(NoOffer):
        preview(
            {**spec, "service": {**spec["service"], "base_ondemand_fallback_replicas": 0}},
            on_demand_only,
            clouds=None,
            allowed=ALL,
        )
    got = preview(spec, on_demand_only, clouds=None, allowed=ALL)
    assert isinstance(got, Chosen) and not got.placement.use_spot and got.placement.cloud == "aws"


def test_enabled_clouds_and_not_enabled_pins() -> None:
    clouds = CloudsState(enabled=("azure",), disabled={"aws": "no credentials"})
    got = preview(_spec("  accelerators: A100:8\n"), OFFERS, clouds=clouds, allowed=ALL)
    assert isinstance(got, Chosen) and got.placement.cloud == "azure"
    pinned = preview(_spec("  cloud: aws\n  accelerators: A100:8\n"), OFFERS, clouds=clouds, allowed=ALL)
    assert (
        isinstance(pinned, Unplaceable)
        and pinned.kind == "not_enabled"
        and "(no credentials)" in pinned.reason
    )
    # Enabled clouds and nothing there fits a spec without `cloud`: refused (it would never run).
    with pytest.raises(NoOffer, match="L4:1 on any cloud: no offer; azure has no L4"):
        preview(_spec("  accelerators: L4\n"), OFFERS, clouds=clouds, allowed=ALL)
    # No cloud enabled: a spec without `cloud` runs here.
    local = preview(_spec("  accelerators: L4:3\n"), OFFERS, clouds=CloudsState(), allowed=ALL)
    assert isinstance(local, Chosen) and local.placement.cloud == "local"
