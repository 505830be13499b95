"""``sky serve up/update`` command-line overrides, applied to a service YAML's text.

    apply_overrides(text, resources={"cloud": "aws", "accelerators": "A100:1"}, secrets=["HF_TOKEN"])

Resource overrides replace the field for every candidate, as SkyPilot's ``--cloud``, ``--gpus``,
... do: the base field is set and the same field is dropped from each ``any_of``/``ordered``
entry (``infra`` is split into cloud/region/zone first when one of those is overridden).
``secrets`` names are declared under ``secrets:`` (their values come with the env overrides,
which the parser puts in ``secrets`` for a declared name), so ``--secret`` never writes a
value into the text. The result is parsed again by ``load_spec`` like any YAML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from .errors import Issue, SpecValidationError
from .yaml_load import load_yaml

RESOURCE_OVERRIDES = ("cloud", "region", "zone", "accelerators", "cpus", "memory", "use_spot", "ports")
_LOCATION = ("cloud", "region", "zone")


def apply_overrides(
    text: str,
    *,
    resources: Mapping[str, Any] | None = None,
    secrets: Iterable[str] = (),
    source: str = "<string>",
) -> str:
    """``text`` with the overrides applied (unchanged when there are none)."""
    overrides = {k: v for k, v in (resources or {}).items() if v is not None}
    declared = list(secrets)
    unknown = sorted(set(overrides) - set(RESOURCE_OVERRIDES))
    if unknown:
        raise ValueError(f"not a resource override: {', '.join(unknown)}")
    if not overrides and not declared:
        return text
    data, _ = load_yaml(text, source)
    if not isinstance(data, dict):
        raise SpecValidationError([Issue("", "the top level must be a mapping of fields")], source=source)
    if overrides:
        data["resources"] = _override_resources(data.get("resources"), overrides, source)
    if declared:
        current = data.get("secrets")
        if current is None:
            current = {}
        if not isinstance(current, dict):
            raise SpecValidationError([Issue("secrets", "must be a mapping to add --secret")], source=source)
        for name in declared:
            current.setdefault(name, None)  # the value comes with the env overrides
        data["secrets"] = current
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _override_resources(value: object, overrides: Mapping[str, Any], source: str) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise SpecValidationError(
            [Issue("resources", "must be a mapping to apply --cloud/--gpus/... overrides")], source=source
        )
    base = dict(value)
    entries = [dict(e) if isinstance(e, dict) else e for e in base.get("any_of") or base.get("ordered") or []]
    if any(k in overrides for k in _LOCATION):
        for holder in (base, *(e for e in entries if isinstance(e, dict))):
            _split_infra(holder)
    for key, override in overrides.items():
        base[key] = override
        for entry in entries:
            if isinstance(entry, dict):
                entry.pop(key, None)
    for key in ("any_of", "ordered"):
        if key in base:
            base[key] = entries
    return base


def _split_infra(holder: dict[str, Any]) -> None:
    infra = holder.pop("infra", None)
    if not isinstance(infra, str):
        return
    for name, part in zip(_LOCATION, infra.strip().split("/", 2), strict=False):
        if part not in ("", "*"):
            holder.setdefault(name, part)
