"""Parsing ``resources.accelerators`` in every form SkyPilot users write it.

    accelerators: A100:8                  one choice (count defaults to 1)
    accelerators: {A100: 8}               one choice
    accelerators: {L4:8, A10g:8, A100:4}  a set: any of these (YAML reads each entry as a key
                                          "L4:8" with a null value, so both shapes are accepted)
    accelerators: [A100:8, L4:8]          a list: in order of preference

Known names are put in their canonical case ("a10g" -> "A10G"); other names are kept as written
so custom accelerators still work.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import NamedTuple

from .fields import Issues, describe

Accelerator = dict[str, int | float]

KNOWN_ACCELERATORS = (
    "A10", "A10G", "A100", "A100-80GB", "A40", "A6000", "B100", "B200", "GH200", "H100", "H100-MEGA",
    "H200", "K80", "L4", "L40", "L40S", "M60", "MI300X", "P100", "P4", "P40", "RTX3090", "RTX4090",
    "RTX6000", "T4", "T4g", "V100", "V100-32GB", "Gaudi HL-205", "Inferentia", "Trainium",
)  # fmt: skip
_CANONICAL = {name.lower(): name for name in KNOWN_ACCELERATORS}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$")


class AcceleratorChoices(NamedTuple):
    """The accelerator options a replica may use: one or more, optionally in preference order."""

    choices: list[Accelerator]
    ordered: bool


def canonical_name(name: str) -> str:
    return _CANONICAL.get(name.lower(), name)


def parse_accelerators(value: object, path: str, issues: Issues) -> AcceleratorChoices | None:
    """Parse any accepted form; ``None`` (with an issue recorded) when it is invalid."""
    before = len(issues.items)
    choices: list[Accelerator | None]
    if isinstance(value, str):
        choices = [_parse_entry(value, None, path, issues)]
        ordered = False
    elif isinstance(value, Mapping):
        choices = [_parse_entry(k, v, path, issues) for k, v in value.items()]
        ordered = False
    elif isinstance(value, list):
        choices = [_parse_item(item, f"{path}[{i}]", issues) for i, item in enumerate(value)]
        ordered = True
    else:
        issues.add(path, f'must be a string like "A100:8", a list or a mapping, got {describe(value)}')
        return None
    if not choices and len(issues.items) == before:
        issues.add(path, "must name at least one accelerator")
    if len(issues.items) != before:
        return None
    unique: list[Accelerator] = []
    for choice in choices:
        if choice is not None and choice not in unique:
            unique.append(choice)
    return AcceleratorChoices(unique, ordered and len(unique) > 1)


def _parse_item(item: object, path: str, issues: Issues) -> Accelerator | None:
    if isinstance(item, str):
        return _parse_entry(item, None, path, issues)
    if isinstance(item, Mapping) and len(item) == 1:
        ((key, count),) = item.items()
        return _parse_entry(key, count, path, issues)
    issues.add(path, f'each entry must be a string like "A100:8" or {{A100: 8}}, got {describe(item)}')
    return None


def _parse_entry(key: object, count: object, path: str, issues: Issues) -> Accelerator | None:
    if not isinstance(key, str):
        issues.add(path, f"accelerator names must be strings, got {describe(key)}")
        return None
    name, sep, count_text = key.strip().partition(":")
    name = name.strip()
    if not name or not _NAME.match(name):
        quoted = any(c in key for c in "{}[],")
        hint = "; a set or list must not be quoted" if quoted else ""
        issues.add(path, f"invalid accelerator name {name!r}{hint}")
        return None
    if sep:
        if count is not None:
            issues.add(path, f"{key!r} gives a count twice (in the name and as a value)")
            return None
        parsed = _count_from_text(count_text.strip())
        if parsed is None:
            issues.add(path, f"invalid count in {key!r}: must be a number greater than 0")
            return None
        return {canonical_name(name): parsed}
    if count is None:
        return {canonical_name(name): 1}
    if isinstance(count, bool) or not isinstance(count, (int, float)):
        issues.add(path, f"count of {name} must be a number, got {describe(count)}")
        return None
    normalized = _normalize(float(count))
    if normalized is None:
        issues.add(path, f"count of {name} must be greater than 0, got {count}")
        return None
    return {canonical_name(name): normalized}


def _count_from_text(text: str) -> int | float | None:
    try:
        return _normalize(float(text))
    except ValueError:
        return None


def _normalize(count: float) -> int | float | None:
    """Counts are positive; whole counts become ints, fractions (shared GPUs) stay floats."""
    if not math.isfinite(count) or count <= 0:
        return None
    return int(count) if count.is_integer() else count


def format_accelerator(acc: Accelerator) -> str:
    return ", ".join(f"{name}:{count}" for name, count in acc.items())
