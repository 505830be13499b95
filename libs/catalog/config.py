"""``$STRATUS_HOME/config.yaml``: the user's settings file, SkyPilot's habit.

Only ``allowed_clouds`` is read here (the clouds Stratus may consider; absent or empty: all
of them). ``local`` is always allowed: it is this machine, not a cloud account. The
provisioner (``stratus check``) and the placement (``up --dry-run``) read it through
``allowed_clouds`` so both agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import CatalogConfigError
from .model import CLOUDS

CONFIG_FILE = "config.yaml"


def read_config(home: Path) -> dict[str, Any]:
    """The parsed config.yaml under ``home``; ``{}`` when there is none."""
    path = home / CONFIG_FILE
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogConfigError(f"{path}: unreadable: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatalogConfigError(f"{path}: must be a mapping of settings, got {type(data).__name__}")
    return data


def allowed_clouds(home: Path) -> tuple[str, ...]:
    """``allowed_clouds`` from config.yaml, lower-cased, in the file's order; all clouds when unset.

    An unknown name is an error naming it and the known ones (a typo must not silently
    disable a cloud).
    """
    data = read_config(home)
    value = data.get("allowed_clouds")
    if value is None or value == []:
        return CLOUDS
    path = home / CONFIG_FILE
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogConfigError(f"{path}: allowed_clouds must be a list of cloud names, e.g. [aws, gcp]")
    out: list[str] = []
    for name in value:
        cloud = name.strip().lower()
        if cloud not in CLOUDS:
            raise CatalogConfigError(
                f"{path}: allowed_clouds names unknown cloud {name!r}; known: {', '.join(CLOUDS)}"
            )
        if cloud not in out:
            out.append(cloud)
    return tuple(out)
