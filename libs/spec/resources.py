"""Parsing ``resources:`` (SkyPilot's resources fields) into ``Resources``.

Alternatives in any form -- a set or list of accelerators, ``any_of`` or ``ordered`` -- become
fully merged candidates: each starts from the base fields and overrides what the entry sets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import unsupported
from .accelerators import AcceleratorChoices, parse_accelerators
from .fields import Issues, Section, check_str, check_str_map, describe
from .model import DISK_TIERS, NETWORK_TIERS, ResourceCandidate, Resources
from .ports import parse_ports

CANDIDATE_FIELDS = (
    "cloud", "region", "zone", "infra", "instance_type", "accelerators", "accelerator_args", "cpus",
    "memory", "use_spot", "job_recovery", "spot_recovery", "disk_size", "disk_tier", "network_tier",
    "ports", "image_id", "labels",
)  # fmt: skip
RESOURCES_FIELDS = (*CANDIDATE_FIELDS, "any_of", "ordered")
CLOUDS = (
    "aws", "gcp", "azure", "kubernetes", "lambda", "oci", "ibm", "scp", "runpod", "fluidstack",
    "paperspace", "cudo", "vsphere", "do", "nebius", "vast", "local",
)  # fmt: skip
_CLOUD_ALIASES = {"k8s": "kubernetes"}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)(\+?)$")


def parse_resources(value: object, path: str, issues: Issues) -> Resources:
    """Best-effort ``Resources``; every problem is recorded in ``issues``."""
    if value is None:
        return Resources()
    sec = Section.of(value, path, issues, (*RESOURCES_FIELDS, *unsupported.RESOURCES))
    if sec is None:
        return Resources()
    base, accelerators = _parse_candidate_fields(sec)
    alternatives = _alternatives(sec)
    ordered = sec.has("ordered")
    multiple = accelerators is not None and len(accelerators.choices) > 1
    if accelerators is not None and not multiple:
        base["accelerators"] = accelerators.choices[0]

    candidates: list[dict[str, Any]] = []
    if multiple and alternatives:
        issues.add(
            sec.at("accelerators"),
            "a set or list of accelerators cannot be combined with any_of/ordered; "
            "give each candidate its own accelerator instead",
        )
    elif alternatives:
        candidates = [{**base, **entry} for entry in alternatives]
    elif multiple and accelerators is not None:
        candidates = [{**base, "accelerators": choice} for choice in accelerators.choices]
        ordered = accelerators.ordered
    return Resources(**base, any_of=[ResourceCandidate(**c) for c in candidates], ordered=ordered)


def _alternatives(sec: Section) -> list[dict[str, Any]]:
    keys = [k for k in ("any_of", "ordered") if sec.has(k)]
    if len(keys) == 2:
        sec.issues.add(sec.at("ordered"), "any_of and ordered cannot be used together; choose one")
        return []
    if not keys:
        return []
    key = keys[0]
    entries = sec.get(key)
    if not isinstance(entries, list) or not entries:
        sec.issues.add(sec.at(key), f"must be a non-empty list of resource mappings, got {describe(entries)}")
        return []
    out = []
    for i, entry in enumerate(entries):
        entry_sec = Section.of(
            entry, f"{sec.at(key)}[{i}]", sec.issues, (*CANDIDATE_FIELDS, *unsupported.RESOURCES)
        )
        if entry_sec is None:
            continue
        fields, accelerators = _parse_candidate_fields(entry_sec)
        if accelerators is not None and len(accelerators.choices) > 1:
            sec.issues.add(entry_sec.at("accelerators"), "a candidate must name a single accelerator")
        elif accelerators is not None:
            fields["accelerators"] = accelerators.choices[0]
        out.append(fields)
    return out


def _parse_candidate_fields(sec: Section) -> tuple[dict[str, Any], AcceleratorChoices | None]:
    """The normalized values of the fields present in ``sec`` (accelerators returned apart)."""
    out: dict[str, Any] = {}
    issues = sec.issues
    unsupported.refuse(sec, unsupported.RESOURCES, issues)
    _parse_location(sec, out)
    if (instance_type := sec.string("instance_type")) is not None:
        out["instance_type"] = instance_type
    for name in ("cpus", "memory"):
        if sec.has(name) and (size := _parse_size(sec.get(name), sec.at(name), issues)) is not None:
            out[name] = size
    if (use_spot := sec.boolean("use_spot")) is not None:
        out["use_spot"] = use_spot
    if (recovery := _parse_job_recovery(sec)) is not None:
        out["job_recovery"] = recovery
    if (disk_size := sec.integer("disk_size", minimum=1)) is not None:
        out["disk_size"] = disk_size
    for field, tiers in (("disk_tier", DISK_TIERS), ("network_tier", NETWORK_TIERS)):
        if sec.has(field):
            tier = sec.get(field)
            tier = tier.lower() if isinstance(tier, str) else tier
            tier = check_str(tier, sec.at(field), issues, choices=tiers)
            if tier is not None:
                out[field] = tier
    if sec.has("ports") and (ports := parse_ports(sec.get("ports"), sec.at("ports"), issues)) is not None:
        out["ports"] = ports
    if sec.has("image_id") and (image := _parse_image_id(sec.get("image_id"), sec.at("image_id"), issues)):
        out["image_id"] = image
    if (
        sec.has("labels")
        and (labels := check_str_map(sec.get("labels"), sec.at("labels"), issues)) is not None
    ):
        out["labels"] = labels
    if sec.has("accelerator_args"):
        args = sec.get("accelerator_args")
        if isinstance(args, Mapping) and all(isinstance(k, str) for k in args):
            out["accelerator_args"] = dict(args)
        else:
            issues.add(sec.at("accelerator_args"), f"must be a mapping, got {describe(args)}")
    accelerators = None
    if sec.has("accelerators") and sec.get("accelerators") is not None:
        accelerators = parse_accelerators(sec.get("accelerators"), sec.at("accelerators"), issues)
    return out, accelerators


def _parse_location(sec: Section, out: dict[str, Any]) -> None:
    issues = sec.issues
    if sec.has("cloud") and (cloud := _parse_cloud(sec.get("cloud"), sec.at("cloud"), issues)):
        out["cloud"] = cloud
    for name in ("region", "zone"):
        if (text := sec.string(name)) is not None:
            out[name] = text
    if not sec.has("infra"):
        return
    infra = check_str(sec.get("infra"), sec.at("infra"), issues)
    if infra is None:
        return
    if any(sec.has(k) for k in ("cloud", "region", "zone")):
        issues.add(sec.at("infra"), "infra cannot be combined with cloud, region or zone")
        return
    # "cloud[/region[/zone]]"; "*" means any.
    parts = [None if p in ("", "*") else p for p in infra.strip().split("/", 2)]
    if parts[0] is not None and (cloud := _parse_cloud(parts[0], sec.at("infra"), issues)):
        out["cloud"] = cloud
    for name, part in zip(("region", "zone"), parts[1:], strict=False):
        if part is not None:
            out[name] = part


def _parse_cloud(value: object, path: str, issues: Issues) -> str | None:
    text = check_str(value, path, issues)
    if text is None:
        return None
    cloud = _CLOUD_ALIASES.get(text.lower(), text.lower())
    return check_str(cloud, path, issues, choices=CLOUDS)


def _parse_size(value: object, path: str, issues: Issues) -> str | None:
    """cpus/memory: ``4``, ``0.5``, ``"4"`` or ``"4+"`` (at least 4); normalized to a string."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        issues.add(path, f'must be a number or a string like "4+", got {describe(value)}')
        return None
    if not isinstance(value, str) and not value > 0:
        issues.add(path, f"must be greater than 0, got {value}")
        return None
    match = _SIZE.match(str(value).strip())
    if match is None:
        issues.add(path, f'must be a number or a string like "4+", got {value!r}')
        return None
    number = float(match.group(1))
    if number <= 0:
        issues.add(path, f"must be greater than 0, got {value!r}")
        return None
    text = str(int(number)) if number.is_integer() else str(number)
    return text + match.group(2)


def _parse_job_recovery(sec: Section) -> dict[str, Any] | None:
    """Refused, as ``sky serve up`` refuses it: a service replaces a preempted replica itself."""
    for key in ("job_recovery", "spot_recovery"):
        if sec.get(key) is not None:
            sec.issues.add(
                sec.at(key),
                f"{key} is not supported for services (as in SkyServe): a preempted spot replica is "
                "replaced by a new one (see replica_policy.dynamic_ondemand_fallback); remove it",
            )
    return None


def _parse_image_id(value: object, path: str, issues: Issues) -> str | dict[str, str] | None:
    if isinstance(value, Mapping):
        return check_str_map(value, path, issues)
    return check_str(value, path, issues)
