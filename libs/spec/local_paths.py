"""Resolving a YAML's local paths on the client, where they mean something.

Like SkyPilot, a relative ``workdir`` or ``file_mounts`` source is relative to the directory
the command runs in (and ``~`` is the user's home). The control plane may run elsewhere, so the
client rewrites them to absolute paths before sending the YAML.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

_REMOTE_PREFIXES = ("s3://", "gs://", "gcs://", "r2://", "https://", "http://", "az://", "cos://", "oci://")


def _absolute(value: str, base: Path) -> str:
    if value.startswith(_REMOTE_PREFIXES):
        return value
    return os.path.normpath(base / os.path.expanduser(value))


def resolve_local_paths(text: str, base: Path) -> str:
    """The YAML text with ``workdir`` and local ``file_mounts`` sources made absolute.

    Returns ``text`` unchanged when there is nothing to rewrite (comments survive then).
    """
    data: Any = yaml.safe_load(text)
    if not isinstance(data, dict):
        return text
    changed = False
    workdir = data.get("workdir")
    if isinstance(workdir, str) and _absolute(workdir, base) != workdir:
        data["workdir"] = _absolute(workdir, base)
        changed = True
    mounts = data.get("file_mounts")
    if isinstance(mounts, dict):
        for dst, src in list(mounts.items()):
            if isinstance(src, str) and _absolute(src, base) != src:
                mounts[dst] = _absolute(src, base)
                changed = True
    return yaml.safe_dump(data, sort_keys=False) if changed else text
