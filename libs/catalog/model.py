"""Typed catalog rows: one ``Offer`` per (cloud, region, zone, instance type, accelerator)."""

from __future__ import annotations

from typing import Any

import msgspec

CLOUDS = ("aws", "gcp", "azure")
SNAPSHOT_DATE = "2026-12-01"  # when the shipped files were read (see data/README.md)


class Offer(msgspec.Struct, frozen=True, kw_only=True):
    """A machine one can rent, with its hourly prices in USD.

    ``zone`` is a zone *ID* on AWS (``use1-az1``: the same physical zone in every account; the
    zone *name* such as ``us-east-1a`` maps to a different ID per account, so it is never
    stored), a zone name on GCP (``us-central1-a``), and ``""`` on Azure (the catalog has no
    zones). GCP offers combine a host VM row and a GPU row of the same zone. ``price`` is None
    when the source has no on-demand price, ``spot_price`` when it has no spot price.
    """

    cloud: str
    region: str
    zone: str
    instance_type: str
    accelerator: str | None = None
    accelerator_count: float = 0.0
    vcpus: float | None = None
    memory_gib: float | None = None
    price: float | None = None
    spot_price: float | None = None

    def hourly(self, use_spot: bool) -> float | None:
        return self.spot_price if use_spot else self.price

    def to_json(self) -> dict[str, Any]:
        count = self.accelerator_count
        return {
            "cloud": self.cloud,
            "region": self.region,
            "zone": self.zone,
            "instance_type": self.instance_type,
            "accelerator": self.accelerator,
            "accelerator_count": int(count) if float(count).is_integer() else count,
            "vcpus": self.vcpus,
            "memory_gib": self.memory_gib,
            "price": self.price,
            "spot_price": self.spot_price,
        }


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Where one cloud's rows come from: the shipped snapshot or a ``catalog refresh``."""

    cloud: str
    date: str
    source: str  # "shipped" or the refreshed file's path


class Catalog(msgspec.Struct, frozen=True, kw_only=True):
    offers: tuple[Offer, ...]
    snapshots: tuple[Snapshot, ...] = ()

    def for_clouds(self, clouds: set[str] | frozenset[str]) -> Catalog:
        return Catalog(
            offers=tuple(o for o in self.offers if o.cloud in clouds),
            snapshots=tuple(s for s in self.snapshots if s.cloud in clouds),
        )

    @property
    def date(self) -> str:
        """The oldest snapshot date (what a user should distrust first)."""
        return min((s.date for s in self.snapshots), default=SNAPSHOT_DATE)
