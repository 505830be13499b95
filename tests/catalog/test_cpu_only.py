"""A CPU-only spec with only AWS and/or Azure enabled: the shipped catalog has CPU-only rows on GCP
alone (N1 hosts), so it is placed on GCP when that is enabled, and otherwise refused with what is
missing and the fix (the cheapest ``instance_type`` that would do), which then places it."""

from __future__ import annotations

import asyncio
import re

import msgspec

from libs.catalog import load_catalog
from libs.events.types import CLOUDS_STREAM, CloudsChecked
from libs.fleet.policy import ResourceRequest
from libs.placement import Chosen, Unplaceable
from libs.placement.choose import place
from tests.api.conftest import Api, api

__all__ = ["api"]

OFFERS = load_catalog().offers
FIX = re.compile(r"set `instance_type: ([^`]+)`")


def refused(req: ResourceRequest, clouds: list[str]) -> str:
    got = place([req], OFFERS, use_spot=req.use_spot, clouds=clouds)
    assert isinstance(got, Unplaceable) and got.kind == "no_offer", got
    return got.reason


def test_cpu_only_on_aws_names_what_is_missing_and_the_fix_places_it() -> None:
    req = ResourceRequest(cpus="8+")
    reason = refused(req, ["aws"])
    assert "the catalog lists no CPU-only instance type on aws (GPU instances only)" in reason, reason
    (suggested,) = FIX.findall(reason)
    cheapest = min(
        (o for o in OFFERS if o.cloud == "aws" and (o.vcpus or 0) >= 8 and o.price is not None),
        key=lambda o: o.price or 0.0,
    )
    assert suggested == cheapest.instance_type
    assert "`cloud: local` runs it on this machine" in reason
    fixed = place(
        [msgspec.structs.replace(req, instance_type=suggested)], OFFERS, use_spot=False, clouds=["aws"]
    )
    assert isinstance(fixed, Chosen), fixed
    assert (fixed.placement.cloud, fixed.placement.instance_type) == ("aws", suggested)


def test_aws_and_azure_each_get_their_fix_and_an_unfittable_size_is_named() -> None:
    reason = refused(ResourceRequest(cpus="2"), ["aws", "azure"])  # hello-sky-serve's resources
    fixes = FIX.findall(reason)
    assert len(fixes) == 2 and fixes[1].startswith("Standard_"), reason
    assert "none fits cpus 2, so drop that" in reason
    for cloud, suggested in zip(["aws", "azure"], fixes, strict=True):
        fixed = place([ResourceRequest(instance_type=suggested)], OFFERS, use_spot=False, clouds=[cloud])
        assert isinstance(fixed, Chosen) and fixed.placement.cloud == cloud, fixed


def test_cpu_only_is_placed_on_gcp_cpu_instances_when_gcp_is_enabled() -> None:
    got = place([ResourceRequest(cpus="4+")], OFFERS, use_spot=False, clouds=["aws", "azure", "gcp"])
    assert isinstance(got, Chosen), got
    assert got.placement.cloud == "gcp" and got.offer.accelerator is None
    assert got.placement.instance_type.startswith("n1-")


async def test_up_with_only_aws_and_azure_enabled_refuses_with_the_fix(api: Api) -> None:
    await api.store.append(
        CLOUDS_STREAM, [CloudsChecked(service="", enabled=["aws", "azure"], disabled={"gcp": "no ADC"})]
    )
    for _ in range(200):
        if api.projection.state.clouds is not None:
            break
        await asyncio.sleep(0.02)
    yaml = "service:\n  readiness_probe: /\n  replicas: 1\nresources:\n  ports: 8080\n{extra}run: x\n"
    resp = await api.http.post(
        "/v1/services", json={"yaml": yaml.format(extra=""), "name": "cpu", "dry_run": True}
    )
    assert resp.status_code in (400, 422), resp.text
    assert (
        "no CPU-only instance type on aws" in resp.text and "no CPU-only instance type on azure" in resp.text
    )
    (suggested, _azure) = FIX.findall(resp.text.replace("\\`", "`"))
    extra = f"  instance_type: {suggested}\n"
    resp = await api.http.post(
        "/v1/services", json={"yaml": yaml.format(extra=extra), "name": "cpu", "dry_run": True}
    )
    assert resp.status_code == 200, resp.text
    assert (resp.json()["placement"]["cloud"], resp.json()["placement"]["instance_type"]) == (
        "aws",
        suggested,
    )


def test_the_suggested_type_is_offered_where_the_spec_pins_it() -> None:
    req = ResourceRequest(cloud="aws", region="eu-west-1", zone="euw1-az2")
    (suggested,) = FIX.findall(refused(req, ["aws"]))
    fixed = place(
        [msgspec.structs.replace(req, instance_type=suggested)], OFFERS, use_spot=False, clouds=["aws"]
    )
    assert isinstance(fixed, Chosen) and (fixed.placement.region, fixed.placement.zone) == (
        "eu-west-1",
        "euw1-az2",
    )
