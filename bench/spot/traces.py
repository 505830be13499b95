"""Spot capacity traces (``{"metadata": {"gap_seconds": N}, "data": [...]}`` per zone file)
and the windows simulated over them.

A *trace* is a folder of zone files (``us-east-2a_v100_1.json``: zone ``us-east-2a``). The
capacity of a zone at tick ``t`` (30 s ticks) is ``data[floor(t * tick / gap) mod len]``:
each sample fills ``gap / tick`` ticks and the index wraps around each file's own length. In a
*binary* trace (every value 0 or 1, as AWS3 and the Can't-Be-Late availability traces) 1
means "available, no limit", as PROTOCOL.md says for AWS3.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import msgspec

TICK_SECONDS = 30.0
WINDOW_TICKS = 2880
UNLIMITED = 1_000_000

# PROTOCOL.md: zone order as the artifact listed them, and the 10 window offsets (ticks).
_AWS12 = (2732, 10799, 9845, 19648, 13123, 21243, 9225, 24275, 20757, 22258)
PROTOCOL: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "AWS1": (("us-east-2a", "us-west-2c", "us-east-1f"), _AWS12),
    "AWS2": (("us-east-2b", "us-west-2a", "us-west-2c"), _AWS12),
    "AWS3": (
        ("us-east-2a", "us-west-2b", "us-east-2b", "us-west-2a", "us-west-2c",
         "us-east-1f", "us-east-1d", "us-east-1a", "us-east-1c"),
        (43567, 173685, 117952, 176963, 152315, 95939, 97639, 41993, 122579, 86293),
    ),
    "GCP1": (
        ("us-central1-b", "us-central1-a", "us-east1-b", "europe-west4-a", "us-west1-b", "asia-northeast1-a"),
        (684, 559, 629, 192, 835, 763, 707, 359, 9, 723),
    ),
}  # fmt: skip


# PROTOCOL.md's reference results: (cost ratio, availability); the optimum's cost only.
def _paper(
    rr: tuple[float, float], sky: tuple[float, float], opt: float
) -> dict[str, tuple[float, float | None]]:
    return {"ondemand": (1.0, 1.0), "round_robin": rr, "skyserve": sky, "optimum": (opt, None)}


PAPER: dict[str, dict[str, tuple[float, float | None]]] = {
    "AWS1": _paper((0.300, 0.8801), (0.514, 0.9922), 0.407),
    "AWS2": _paper((0.270, 0.7741), (0.573, 0.9758), 0.480),
    "AWS3": _paper((0.330, 0.9814), (0.456, 0.9971), 0.340),
    "GCP1": _paper((0.332, 0.9875), (0.462, 0.9983), 0.336),
}

_GCP_ZONE = re.compile(r"^[a-z]+-[a-z]+\d+-[a-z]$")


class TraceError(ValueError):
    """A trace folder or file that cannot be used; the message names it and why."""


class Zone(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    cloud: str
    region: str
    gap_seconds: float
    data: tuple[int, ...]

    def capacity(self, tick: int) -> int:
        return self.data[int(tick * TICK_SECONDS // self.gap_seconds) % len(self.data)]


class Trace(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    zones: tuple[Zone, ...]
    offsets: tuple[int, ...] = ()  # the protocol's windows, when it names this trace

    @property
    def length_ticks(self) -> int:
        """Ticks covered by the longest zone file (random windows start below it)."""
        return max(int(len(z.data) * z.gap_seconds // TICK_SECONDS) for z in self.zones)

    def capacities(self, offset: int, ticks: int) -> list[list[int]]:
        """Per tick of the window starting at ``offset``: each zone's capacity."""
        return [[z.capacity(offset + t) for z in self.zones] for t in range(ticks)]


def _zone_of(path: Path) -> tuple[str, str, str]:
    name = path.stem.split("_")[0]
    if _GCP_ZONE.match(name):
        return name, "gcp", name.rsplit("-", 1)[0]
    if re.match(r"^[a-z]{2}-[a-z]+-\d[a-z]$", name):
        return name, "aws", name[:-1]
    raise TraceError(
        f"{path}: the file name does not start with a zone name (us-east-1a_..., us-central1-b_...)"
    )


def load_zone_file(path: Path) -> tuple[str, str, str, float, list[int]]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TraceError(f"{path}: not a readable JSON trace ({exc})") from exc
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    data = doc.get("data") if isinstance(doc, dict) else None
    gap = meta.get("gap_seconds") if isinstance(meta, dict) else None
    if not isinstance(gap, int | float) or isinstance(gap, bool) or gap <= 0:
        raise TraceError(f"{path}: metadata.gap_seconds must be a positive number")
    if not isinstance(data, list) or not data or not all(isinstance(v, int) and v >= 0 for v in data):
        raise TraceError(f"{path}: data must be a non-empty list of counts (integers >= 0)")
    name, cloud, region = _zone_of(path)
    return name, cloud, region, float(gap), data


def load_trace(folder: Path) -> Trace:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise TraceError(f"{folder}: no zone files (*.json)")
    raw = [load_zone_file(f) for f in files]
    binary = all(v in (0, 1) for *_, data in raw for v in data)
    names = [r[0] for r in raw]
    # Two instance types in one zone are two capacity pools: named by their file then.
    labels = [f.stem if names.count(n) > 1 else n for f, n in zip(files, names, strict=True)]
    zones = {
        label: Zone(name=label, cloud=cloud, region=region, gap_seconds=gap,
                    data=tuple(UNLIMITED if binary and v else v for v in data))
        for label, (_, cloud, region, gap, data) in zip(labels, raw, strict=True)
    }  # fmt: skip
    order, offsets = PROTOCOL.get(folder.name, ((), ()))
    if set(order) == set(zones):
        return Trace(name=folder.name, zones=tuple(zones[z] for z in order), offsets=offsets)
    return Trace(name=folder.name, zones=tuple(zones.values()))


def load_traces(root: Path) -> list[Trace]:
    """``root`` is one trace (zone files) or holds trace folders (any depth)."""
    if not root.is_dir():
        raise TraceError(f"{root}: not a folder")
    if any(root.glob("*.json")):
        return [load_trace(root)]
    folders = sorted({p.parent for p in root.rglob("*.json")})
    if not folders:
        raise TraceError(f"{root}: no trace folders (folders of zone *.json files) under it")
    traces = [load_trace(f) for f in folders]
    names = [t.name for t in traces]
    if len(set(names)) != len(names):  # nested sets: name them by their relative path
        traces = [
            msgspec.structs.replace(t, name=str(f.relative_to(root)))
            for t, f in zip(traces, folders, strict=True)
        ]
    return traces


def windows(trace: Trace, *, offsets: list[int] | None, count: int | None, seed: int) -> list[int]:
    """Window start offsets: given, else ``count`` random ones (seeded), else the protocol's;
    a trace without protocol windows gets 10 random ones."""
    if offsets:
        return list(offsets)
    if count is None and trace.offsets:
        return list(trace.offsets)
    rng = random.Random(f"{seed}:{trace.name}")
    return [rng.randrange(max(1, trace.length_ticks)) for _ in range(count or 10)]
