"""Reading catalog CSVs into ``Offer``s: the shipped snapshot, or a refreshed file under
``$STRATUS_HOME/catalog/`` (which replaces the shipped one for its cloud).

Each cloud keeps its source schema (SkyPilot's ``vms.csv`` columns) so that a refreshed file
is the same kind of file as the shipped one and goes through the same parser.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import CatalogDataError
from .gcp_hosts import built_in_gpus, is_n1, n1_accepts
from .model import CLOUDS, SNAPSHOT_DATE, Catalog, Offer, Snapshot

Row = Mapping[str, str]
OVERRIDE_DIR = "catalog"


def _num(row: Row, key: str, where: str) -> float | None:
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise CatalogDataError(f"{where}: column {key} is not a number: {text!r}") from exc


def _rows(text: str, where: str, required: Iterable[str]) -> list[tuple[str, Row]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise CatalogDataError(f"{where}: missing column(s) {', '.join(missing)}")
    return [(f"{where} line {i + 2}", row) for i, row in enumerate(reader)]


def _whole_instance(cloud: str, text: str, where: str) -> list[Offer]:
    """AWS and Azure: one row prices the whole instance, GPUs included."""
    cols = ("InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price",
            "SpotPrice", "Region")  # fmt: skip
    out = []
    for at, row in _rows(text, where, cols):
        acc = (row.get("AcceleratorName") or "").strip() or None
        out.append(
            Offer(
                cloud=cloud,
                region=row["Region"].strip(),
                zone=(row.get("AvailabilityZone") or "").strip(),
                instance_type=row["InstanceType"].strip(),
                accelerator=acc,
                accelerator_count=_num(row, "AcceleratorCount", at) or 0.0 if acc else 0.0,
                vcpus=_num(row, "vCPUs", at),
                memory_gib=_num(row, "MemoryGiB", at),
                price=_num(row, "Price", at),
                spot_price=_num(row, "SpotPrice", at),
            )
        )
    return out


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a + b, 6)


def _gcp(text: str, where: str) -> list[Offer]:
    """GCP: host rows + GPU rows of the same zone (see ``gcp_hosts``); N1 hosts alone are
    CPU-only offers."""
    cols = ("InstanceType", "vCPUs", "MemoryGiB", "AcceleratorName", "AcceleratorCount", "Region",
            "AvailabilityZone", "Price", "SpotPrice")  # fmt: skip
    hosts: dict[str, list[Offer]] = defaultdict(list)
    gpus: dict[tuple[str, str, float], Offer] = {}
    for at, row in _rows(text, where, cols):
        zone = row["AvailabilityZone"].strip()
        base = Offer(
            cloud="gcp",
            region=row["Region"].strip(),
            zone=zone,
            instance_type=row["InstanceType"].strip(),
            vcpus=_num(row, "vCPUs", at),
            memory_gib=_num(row, "MemoryGiB", at),
            price=_num(row, "Price", at),
            spot_price=_num(row, "SpotPrice", at),
        )
        acc = (row.get("AcceleratorName") or "").strip()
        if base.instance_type:
            hosts[zone].append(base)
        elif acc:
            count = _num(row, "AcceleratorCount", at) or 0.0
            gpus[(zone, acc, count)] = base
        else:
            raise CatalogDataError(f"{at}: a row needs an InstanceType or an AcceleratorName")
    out: list[Offer] = []
    for zone, zone_hosts in hosts.items():
        for host in zone_hosts:
            built_in = built_in_gpus(host.instance_type)
            if built_in is not None:
                gpu = gpus.get((zone, built_in[0], float(built_in[1])))
                if gpu is not None:
                    out.append(_combine(host, gpu, built_in[0], float(built_in[1])))
                continue
            if not is_n1(host.instance_type):
                continue
            out.append(host)  # CPU only
            for (gzone, acc, count), gpu in gpus.items():
                if gzone == zone and n1_accepts(acc, count, host.vcpus):
                    out.append(_combine(host, gpu, acc, count))
    return out


def _combine(host: Offer, gpu: Offer, accelerator: str, count: float) -> Offer:
    return Offer(
        cloud="gcp",
        region=host.region,
        zone=host.zone,
        instance_type=host.instance_type,
        accelerator=accelerator,
        accelerator_count=count,
        vcpus=host.vcpus,
        memory_gib=host.memory_gib,
        price=_add(host.price, gpu.price),
        spot_price=_add(host.spot_price, gpu.spot_price),
    )


def parse(cloud: str, text: str, where: str) -> list[Offer]:
    """The offers in one cloud's CSV text (``where`` names it in errors)."""
    if cloud == "gcp":
        return _gcp(text, where)
    if cloud in ("aws", "azure"):
        return _whole_instance(cloud, text, where)
    raise CatalogDataError(f"{where}: unknown cloud {cloud!r} (known: {', '.join(CLOUDS)})")


def shipped_text(cloud: str) -> str:
    """The CSV text shipped with the package for ``cloud``."""
    try:
        return resources.files("libs.catalog").joinpath("data").joinpath(f"{cloud}.csv").read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogDataError(f"the shipped catalog for {cloud} is unreadable: {exc}") from exc


def override_path(home: Path, cloud: str) -> Path:
    return home / OVERRIDE_DIR / f"{cloud}.csv"


def meta_path(home: Path, cloud: str) -> Path:
    return home / OVERRIDE_DIR / f"{cloud}.meta.json"


@lru_cache(maxsize=8)
def _shipped(cloud: str) -> tuple[Offer, ...]:
    return tuple(parse(cloud, shipped_text(cloud), f"shipped {cloud}.csv"))


@lru_cache(maxsize=16)
def _file(path: Path, mtime_ns: int, cloud: str) -> tuple[Offer, ...]:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogDataError(f"{path}: unreadable: {exc}") from exc
    return tuple(parse(cloud, text, str(path)))


def _meta_date(home: Path, cloud: str) -> str:
    try:
        data = json.loads(meta_path(home, cloud).read_text("utf-8"))
    except (OSError, ValueError):
        return "unknown"
    date = data.get("date") if isinstance(data, dict) else None
    return date if isinstance(date, str) else "unknown"


def load_catalog(home: Path | None = None) -> Catalog:
    """Every cloud's offers: ``home``'s refreshed file where there is one, else the shipped one."""
    offers: list[Offer] = []
    snapshots: list[Snapshot] = []
    for cloud in CLOUDS:
        path = override_path(home, cloud) if home is not None else None
        if path is not None and path.is_file():
            offers.extend(_file(path, path.stat().st_mtime_ns, cloud))
            snapshots.append(Snapshot(cloud=cloud, date=_meta_date(home or path, cloud), source=str(path)))
        else:
            offers.extend(_shipped(cloud))
            snapshots.append(Snapshot(cloud=cloud, date=SNAPSHOT_DATE, source="shipped"))
    if home is not None:
        # The local provider's simulated spot zones, when home has a zone trace (spot_local_zones).
        from libs.placement.spot_local_zones import LOCAL_ZONE_TRACE_FILE, read_zone_trace

        zones = read_zone_trace(home / LOCAL_ZONE_TRACE_FILE)
        offers.extend(zones.offers() if zones is not None else ())
    return Catalog(offers=tuple(offers), snapshots=tuple(snapshots))
