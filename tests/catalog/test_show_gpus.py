"""``stratus show-gpus``: the real CLI over the shipped catalog (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from libs.catalog import load_catalog
from services.api.cli import app

runner = CliRunner()


def _run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["show-gpus", *args], env={"STRATUS_HOME": str(tmp_path)})
    return result.exit_code, result.stdout, result.stderr


def test_a100_json_lists_offers_of_all_three_clouds_cheapest_first(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, "A100", "--json")
    assert code == 0
    offers = json.loads(out)
    assert {o["cloud"] for o in offers} == {"aws", "gcp", "azure"}
    keys = {
        "cloud",
        "region",
        "zone",
        "instance_type",
        "accelerator",
        "accelerator_count",
        "price",
        "spot_price",
    }
    assert all(keys <= set(o) and o["accelerator"] == "A100" for o in offers)
    prices = [o["price"] for o in offers if o["price"] is not None]
    assert prices == sorted(prices)
    # Each row is a real catalog offer: its cheapest region and zone for that instance type.
    cat = load_catalog().offers
    p4d = next(o for o in offers if o["instance_type"] == "p4d.24xlarge")
    assert p4d["price"] == min(o.price for o in cat if o.instance_type == "p4d.24xlarge" and o.price)
    assert p4d["accelerator_count"] == 8 and p4d["zone"].count("-az") == 1


def test_count_cloud_and_region_filters(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, "A100:8", "--cloud", "gcp", "--json", "--all-regions")
    offers = json.loads(out)
    assert code == 0 and offers and {(o["cloud"], o["accelerator_count"]) for o in offers} == {("gcp", 8)}
    assert len({o["zone"] for o in offers}) > 1  # --all-regions --json: every zone
    code, out, _ = _run(tmp_path, "T4", "--region", "eastus", "--json")
    assert code == 0 and {(o["cloud"], o["region"]) for o in json.loads(out)} == {("azure", "eastus")}


def test_table_without_arguments_lists_accelerators_and_counts(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path)
    assert code == 0
    assert "catalog of aws 2026-12-01, gcp 2026-12-01, azure 2026-12-01" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["L4", "gcp", "1,", "2,", "4,", "8"] in lines
    assert ["A100", "aws", "8"] in lines


def test_table_with_an_accelerator_shows_prices(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, "H100:8", "--cloud", "aws")
    assert code == 0
    header, *rows = out.splitlines()[1:]
    assert header.split()[:4] == ["GPU", "QTY", "CLOUD", "INSTANCE_TYPE"]
    assert rows and all(r.split()[:3] == ["H100", "8", "aws"] for r in rows)
    assert any("p5.48xlarge" in r and "$" in r for r in rows)


def test_bad_input_is_named(tmp_path: Path) -> None:
    code, _, err = _run(tmp_path, "L4:3", "--cloud", "gcp")
    assert code == 1 and "no offer for L4:3 on gcp in the catalog; gcp has L4 in counts 1, 2, 4, 8" in err
    code, _, err = _run(tmp_path, "A100:x")
    assert code == 1 and "the count 'x' is not a number" in err
    code, _, err = _run(tmp_path, "A100", "--cloud", "ibm")
    assert code == 1 and "--cloud ibm: unknown cloud; the catalog has aws, gcp, azure" in err
