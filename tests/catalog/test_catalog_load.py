"""libs.catalog: the shipped snapshot as typed offers, GCP host+GPU pricing, overrides, config."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from libs.catalog import (
    SNAPSHOT_DATE,
    CatalogConfigError,
    CatalogDataError,
    allowed_clouds,
    load_catalog,
)
from libs.catalog.load import override_path, parse, shipped_text


def _rows(cloud: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(shipped_text(cloud))))


def test_shipped_snapshot_has_every_cloud_and_its_date() -> None:
    cat = load_catalog()
    assert {o.cloud for o in cat.offers} == {"aws", "gcp", "azure"}
    assert [(s.cloud, s.date, s.source) for s in cat.snapshots] == [
        (c, SNAPSHOT_DATE, "shipped") for c in ("aws", "gcp", "azure")
    ]
    assert SNAPSHOT_DATE == "2026-12-01"
    # AWS and Azure: one offer per source row, prices as in the file.
    assert sum(o.cloud == "aws" for o in cat.offers) == len(_rows("aws")) == 1463
    assert sum(o.cloud == "azure" for o in cat.offers) == len(_rows("azure")) == 187


def test_aws_rows_keep_zone_ids_and_whole_instance_prices() -> None:
    row = next(r for r in _rows("aws") if r["InstanceType"] == "p4d.24xlarge" and r["Region"] == "us-east-1")
    offer = next(
        o for o in load_catalog().offers
        if o.cloud == "aws" and o.instance_type == "p4d.24xlarge" and o.zone == row["AvailabilityZone"]
    )  # fmt: skip
    assert offer.zone.startswith("use1-az")  # a zone ID, not an account-specific zone name
    assert (offer.accelerator, offer.accelerator_count) == ("A100", 8.0)
    assert offer.price == float(row["Price"]) and offer.spot_price == float(row["SpotPrice"])


def test_aws_empty_price_stays_unknown() -> None:
    p5e = [o for o in load_catalog().offers if o.instance_type == "p5e.48xlarge"]
    assert len(p5e) == 9 and all(o.price is None for o in p5e)
    assert any(o.spot_price is not None for o in p5e)


def test_azure_has_no_zones() -> None:
    assert {o.zone for o in load_catalog().offers if o.cloud == "azure"} == {""}


def test_gcp_total_is_host_plus_gpu_of_the_same_zone() -> None:
    rows = _rows("gcp")
    host = next(
        r for r in rows if r["InstanceType"] == "a2-highgpu-1g" and r["AvailabilityZone"] == "us-central1-a"
    )
    gpu = next(
        r for r in rows
        if not r["InstanceType"] and r["AcceleratorName"] == "A100" and r["AcceleratorCount"] in ("1", "1.0")
        and r["AvailabilityZone"] == "us-central1-a"
    )  # fmt: skip
    offer = next(
        o for o in load_catalog().offers if o.instance_type == "a2-highgpu-1g" and o.zone == "us-central1-a"
    )
    assert offer.price == pytest.approx(float(host["Price"]) + float(gpu["Price"]))
    assert offer.price == pytest.approx(3.67, abs=0.01)  # the README's example
    assert offer.spot_price == pytest.approx(float(host["SpotPrice"]) + float(gpu["SpotPrice"]))


def test_gcp_families_carry_their_gpus() -> None:
    gcp = [o for o in load_catalog().offers if o.cloud == "gcp"]
    pairs = {(o.instance_type, o.accelerator, o.accelerator_count) for o in gcp}
    assert ("a2-highgpu-8g", "A100", 8.0) in pairs
    assert ("a2-ultragpu-4g", "A100-80GB", 4.0) in pairs
    assert ("a3-highgpu-8g", "H100", 8.0) in pairs
    assert ("a3-megagpu-8g", "H100-MEGA", 8.0) in pairs
    assert ("g2-standard-96", "L4", 8.0) in pairs and ("g2-standard-24", "L4", 2.0) in pairs
    assert ("n1-standard-8", "T4", 1.0) in pairs and ("n1-standard-4", None, 0.0) in pairs
    # Never an accelerator-optimized host with a GPU it does not have, nor too many vCPUs for N1.
    assert not any(o.instance_type.startswith("g2-") and o.accelerator != "L4" for o in gcp)
    assert ("n1-standard-16", "V100", 1.0) not in pairs  # V100 x1 allows at most 12 vCPUs
    assert ("n1-standard-8", "V100", 1.0) in pairs
    assert not any(o.accelerator == "B200" for o in gcp)  # its a4 host rows are not in the snapshot


def test_override_replaces_the_shipped_file_for_its_cloud(tmp_path: Path) -> None:
    path = override_path(tmp_path, "azure")
    path.parent.mkdir(parents=True)
    header = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,"
    header += "Generation"
    path.write_text(f"{header}\nStandard_NC24ads_A100_v4,A100-80GB,1,24,220,A100,1.23,0.45,eastus,V2\n")
    (tmp_path / "catalog" / "azure.meta.json").write_text('{"date": "2027-01-02T03:04:05+00:00"}')
    cat = load_catalog(tmp_path)
    azure = [o for o in cat.offers if o.cloud == "azure"]
    assert [(o.instance_type, o.price, o.spot_price) for o in azure] == [
        ("Standard_NC24ads_A100_v4", 1.23, 0.45)
    ]
    assert sum(o.cloud == "aws" for o in cat.offers) == 1463  # other clouds still shipped
    snap = next(s for s in cat.snapshots if s.cloud == "azure")
    assert snap.date == "2027-01-02T03:04:05+00:00" and snap.source == str(path)


def test_malformed_rows_name_the_file_and_line() -> None:
    header = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice,Region"
    text = f"{header}\ng5,A10G,1,4,16,cheap,,r\n"
    with pytest.raises(CatalogDataError, match=r"x.csv line 2: column Price is not a number: 'cheap'"):
        parse("aws", text, "x.csv")
    with pytest.raises(CatalogDataError, match="missing column"):
        parse("aws", "InstanceType,Price\n", "y.csv")


def test_allowed_clouds(tmp_path: Path) -> None:
    assert allowed_clouds(tmp_path) == ("aws", "gcp", "azure")  # no config.yaml: all
    (tmp_path / "config.yaml").write_text("allowed_clouds:\n  - GCP\n  - aws\n")
    assert allowed_clouds(tmp_path) == ("gcp", "aws")
    (tmp_path / "config.yaml").write_text("allowed_clouds: [aws, ibm]\n")
    with pytest.raises(CatalogConfigError, match="unknown cloud 'ibm'; known: aws, gcp, azure"):
        allowed_clouds(tmp_path)
    (tmp_path / "config.yaml").write_text("allowed_clouds: aws\n")
    with pytest.raises(CatalogConfigError, match="must be a list"):
        allowed_clouds(tmp_path)
    (tmp_path / "config.yaml").write_text("allowed_clouds: [aws\n")
    with pytest.raises(CatalogConfigError, match="not valid YAML"):
        allowed_clouds(tmp_path)
