"""Rewriting a cloud's catalog file with new prices, and saving it under ``$STRATUS_HOME``.

The refresh only changes ``Price`` / ``SpotPrice``: which instance types exist, their GPUs,
vCPUs and memory come from the current catalog (the pricing APIs do not say which GPU a type
has in a form we could trust). A row the API has no price for keeps its old price, and the
report counts it, so a partial answer never empties the catalog.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import msgspec

from ..errors import CatalogDataError, RefreshError
from ..load import meta_path, override_path, parse, shipped_text

# A row -> its new (on-demand, spot) prices; None where the API gave none.
Prices = tuple[float | None, float | None]
Updater = Callable[[Mapping[str, str]], Prices]


class RefreshReport(msgspec.Struct, frozen=True, kw_only=True):
    cloud: str
    path: str
    rows: int
    updated: int  # rows with at least one new price
    unchanged: int  # rows the API had no price for (old prices kept)
    source: str
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        text = f"{self.updated} of {self.rows} rows got new prices from {self.source}, written to {self.path}"
        if self.unchanged:
            text += f"; {self.unchanged} kept their previous price (not in the API's answer)"
        return "; ".join([text, *self.notes])


def current_text(home: Path, cloud: str) -> str:
    """The catalog file in use for ``cloud``: the refreshed one under ``home``, else the shipped one."""
    path = override_path(home, cloud)
    if path.is_file():
        try:
            return path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogDataError(f"{path}: unreadable: {exc}") from exc
    return shipped_text(cloud)


def current_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _fmt(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


def rewrite(text: str, update: Updater) -> tuple[str, int, int]:
    """``text`` with each row's Price/SpotPrice from ``update``; returns (text, updated, unchanged)."""
    reader = csv.DictReader(io.StringIO(text))
    fields = list(reader.fieldnames or [])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    updated = unchanged = 0
    for row in reader:
        price, spot = update(row)
        if price is None and spot is None:
            unchanged += 1
        else:
            updated += 1
            if price is not None:
                row["Price"] = _fmt(price)
            if spot is not None:
                row["SpotPrice"] = _fmt(spot)
        writer.writerow(row)
    return out.getvalue(), updated, unchanged


def save(
    home: Path, cloud: str, text: str, *, now: datetime, source: str, updated: int, unchanged: int
) -> Path:
    """Write the new file (checked by parsing it first) and its meta, each atomically."""
    path = override_path(home, cloud)
    parse(cloud, text, f"refreshed {cloud}.csv")  # never write a file the loader would refuse
    meta = {"date": now.isoformat(), "source": source, "updated": updated, "unchanged": unchanged}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, content in ((path, text), (meta_path(home, cloud), json.dumps(meta, indent=2))):
            tmp = target.with_suffix(target.suffix + ".tmp")
            tmp.write_text(content, "utf-8")
            os.replace(tmp, target)
    except OSError as exc:
        raise RefreshError(f"could not write {path}: {exc}") from exc
    return path
