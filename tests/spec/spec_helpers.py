"""Shared helpers for the spec tests: a minimal valid service, varied one field at a time."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DELETE = object()

BASE: dict[str, Any] = {
    "service": {"readiness_probe": "/health", "replicas": 2},
    "resources": {"ports": 8080},
    "run": "python -m http.server 8080",
}


def variant(**changes: Any) -> str:
    """BASE as YAML with changes by dotted path (``service__replicas=3``); DELETE removes."""
    doc = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return yaml.safe_dump(doc, sort_keys=False)
