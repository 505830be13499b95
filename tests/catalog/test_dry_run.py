"""``stratus up --dry-run --json`` and ``up`` validation through the real CLI and a live API."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

from typer.testing import CliRunner, Result

from libs.catalog import load_catalog
from libs.events.types import CLOUDS_STREAM, CloudsChecked
from services.api.cli import app
from tests.api.conftest import Api, Live, api, live

__all__ = ["api", "live"]  # the API fixtures, served by uvicorn on loopback

runner = CliRunner()

A100_YAML = """\
service:
  readiness_probe: /
  replicas: 2
resources:
  ports: 8080
  accelerators: {accelerators}
run: python -m http.server 8080
"""


async def cli(live: Live, *args: str, input: str | None = None) -> Result:
    token = getattr(live.api, "token", None)  # the API's admin token, once the API has auth
    env = {"STRATUS_API_TOKEN": token} if isinstance(token, str) else {}
    invoke = functools.partial(runner.invoke, app, ["--api-url", live.url, *args], input=input, env=env)
    return await asyncio.to_thread(invoke)


def _spec(tmp_path: Path, accelerators: str) -> Path:
    path = tmp_path / "svc.yaml"
    path.write_text(A100_YAML.format(accelerators=accelerators))
    return path


def _cheapest(accelerator: str, count: float, clouds: set[str]) -> float:
    return min(
        o.price
        for o in load_catalog().offers
        if o.accelerator == accelerator and o.accelerator_count == count and o.cloud in clouds and o.price
    )


async def test_dry_run_json_picks_the_cheapest_allowed_offer(live: Live, tmp_path: Path) -> None:
    result = await cli(live, "up", str(_spec(tmp_path, "A100:8")), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    p = plan["placement"]
    assert plan["dry_run"] is True and plan["spec"]["resources"]["accelerators"] == {"A100": 8}
    assert p["price_per_hour"] == _cheapest("A100", 8, {"aws", "gcp", "azure"})
    where = (p["cloud"], p["region"], p["zone"], p["instance_type"])
    offer = next(
        o
        for o in load_catalog().offers
        if (o.cloud, o.region, o.zone, o.instance_type) == where
        and o.accelerator == "A100"
        and o.accelerator_count == 8
    )
    assert offer.price == p["price_per_hour"]
    assumed = "no provisioner has reported enabled clouds yet: all allowed clouds assumed enabled"
    assert p["reason"].endswith(assumed)
    assert live.api.projection.state.services == {}  # nothing recorded


async def test_allowed_clouds_in_config_limit_the_dry_run(live: Live, tmp_path: Path) -> None:
    home = live.api.settings.home
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("allowed_clouds: [azure]\n")
    result = await cli(live, "up", str(_spec(tmp_path, "A100:8")), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    p = json.loads(result.stdout)["placement"]
    assert (p["cloud"], p["instance_type"]) == ("azure", "Standard_ND96asr_v4")
    assert p["price_per_hour"] == _cheapest("A100", 8, {"azure"})


async def test_recorded_clouds_checked_decides_where(live: Live, tmp_path: Path) -> None:
    await live.api.store.append(
        CLOUDS_STREAM,
        [CloudsChecked(service="", enabled=["aws"], disabled={"gcp": "no ADC", "azure": "no login"})],
    )
    for _ in range(200):
        if live.api.projection.state.clouds is not None:
            break
        await asyncio.sleep(0.02)
    result = await cli(live, "up", str(_spec(tmp_path, "A100:8")), "--dry-run", "--json")
    p = json.loads(result.stdout)["placement"]
    assert (p["cloud"], p["price_per_hour"]) == ("aws", _cheapest("A100", 8, {"aws"}))
    assert "assumed enabled" not in p["reason"]
    # Pinned to a cloud that is not enabled: accepted, and the plan says why it will wait.
    pinned = _spec(tmp_path, "A100:8")
    pinned.write_text(pinned.read_text().replace("resources:\n", "resources:\n  cloud: gcp\n"))
    result = await cli(live, "up", str(pinned), "--dry-run", "--json")
    p = json.loads(result.stdout)["placement"]
    assert p["placed"] is False and "cloud gcp is not enabled (no ADC)" in p["reason"]


async def test_up_refuses_a_spec_nothing_satisfies(live: Live, tmp_path: Path) -> None:
    path = _spec(tmp_path, "L4:3")
    path.write_text(path.read_text().replace("resources:\n", "resources:\n  cloud: gcp\n"))
    result = await cli(live, "up", str(path), "-y")
    assert result.exit_code == 1
    assert "L4:3 on gcp: no offer; gcp has L4 in counts 1, 2, 4, 8" in result.stderr
    assert live.api.projection.state.services == {}


async def test_up_shows_placement_and_price_before_asking(live: Live, tmp_path: Path) -> None:
    result = await cli(live, "up", str(_spec(tmp_path, "A100:8")), input="n\n")
    assert result.exit_code == 1  # aborted at the prompt
    out = result.stdout
    price = _cheapest("A100", 8, {"aws", "gcp", "azure"})
    assert "placement: " in out and f"at ${price:.2f}" in out.replace(f"{price:.4f}", f"{price:.2f}")
    assert out.index("placement: ") < out.index("Proceed?")


async def test_cpu_only_spec_without_clouds_runs_locally(api: Api) -> None:
    yaml = "service:\n  readiness_probe: /\n  replicas: 1\nresources:\n  ports: 8080\n  cpus: 2\nrun: x\n"
    resp = await api.http.post("/v1/services", json={"yaml": yaml, "name": "local-one", "dry_run": True})
    assert resp.status_code == 200, resp.text
    p = resp.json()["placement"]
    assert (p["cloud"], p["price_per_hour"]) == ("local", 0.0)
    assert p["reason"].startswith("local: no cloud enabled")


async def test_status_shows_why_a_replica_landed_where_it_did(api: Api) -> None:
    from libs.events.types import (
        Placement,
        ReplicaScheduled,
        ServiceRequested,
        replica_stream,
        service_stream,
    )
    from libs.spec import load_spec, spec_to_dict

    yaml = "service:\n  readiness_probe: /\n  replicas: 1\nresources:\n  ports: 8080\nrun: x\n"
    await api.store.append(
        service_stream("why"), [ServiceRequested(service="why", spec=spec_to_dict(load_spec(yaml)))]
    )
    reason = "aws/us-east-1/use1-az2 g5.xlarge on-demand at $1.01/h: best of 2 offers (1 blocked: ...)"
    placement = Placement(
        cloud="aws", region="us-east-1", zone="use1-az2", instance_type="g5.xlarge", price_per_hour=1.01
    )
    res = await api.store.append(
        replica_stream("why", 1),
        [ReplicaScheduled(service="why", replica_id=1, placement=placement, reason=reason)],
    )
    await api.projection.wait_for(res.last_position, 5.0)
    (rep,) = (await api.http.get("/v1/services/why")).json()["replicas"]
    assert (rep["cloud"], rep["zone"], rep["price_per_hour"], rep["placement_reason"]) == (
        "aws",
        "use1-az2",
        1.01,
        reason,
    )
