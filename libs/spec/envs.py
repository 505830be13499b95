"""``envs``/``secrets`` and ``--env KEY=VALUE`` overrides.

Values are turned into strings the way SkyPilot does (``7`` -> ``"7"``, ``true`` -> ``"True"``)
so existing YAMLs see the same environment. A null value is a declaration that the value must
come from ``--env``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import EnvOverrideError, Issue
from .fields import Issues, describe, join

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# SkyPilot's form of a reference: $NAME or ${NAME}.
_REFERENCE = re.compile(r"\$\{?\b([a-zA-Z_][a-zA-Z0-9_]*)\b\}?")


def substitute(value: Any, values: Mapping[str, str]) -> Any:
    """``$NAME`` / ``${NAME}`` replaced by ``values[NAME]`` in every string of a YAML value, as
    SkyPilot fills ``service``, ``file_mounts`` and ``workdir``; unknown names stay as written."""
    if isinstance(value, str):
        return _REFERENCE.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, Mapping):
        return {substitute(k, values): substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    return value


def references(value: Any) -> set[str]:
    """The names referenced by ``$NAME`` / ``${NAME}`` anywhere in a YAML value."""
    return set(_REFERENCE.findall(json.dumps(value, default=str)))


def parse_env_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["K=V", ...]`` -> ``{"K": "V"}``; the last of repeated keys wins."""
    out: dict[str, str] = {}
    problems: list[Issue] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            problems.append(Issue("--env", f"{item!r} must be KEY=VALUE"))
        elif not ENV_NAME.match(key):
            problems.append(Issue("--env", f"{key!r} is not a valid environment variable name"))
        else:
            out[key] = value
    if problems:
        raise EnvOverrideError(problems, source="command line")
    return out


def parse_env_file(text: str, source: str = "<env file>") -> dict[str, str]:
    """A dotenv file, as SkyPilot's ``--env-file`` reads it: ``KEY=VALUE`` lines, ``#``
    comments, an optional ``export``, values optionally in single or double quotes."""
    out: dict[str, str] = {}
    problems: list[Issue] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not ENV_NAME.match(key):
            problems.append(Issue(f"line {number}", f"expected KEY=VALUE, got {raw.strip()[:40]!r}"))
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key] = value
    if problems:
        raise EnvOverrideError(problems, source=source)
    return out


def parse_env_map(value: object, path: str, issues: Issues) -> dict[str, str | None]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        issues.add(path, f"must be a mapping of names to values, got {describe(value)}")
        return {}
    out: dict[str, str | None] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not ENV_NAME.match(key):
            issues.add(path, f"{key!r} is not a valid environment variable name")
        elif item is None:
            out[key] = None
        elif isinstance(item, (str, bool, int, float)):
            out[key] = str(item)
        else:
            issues.add(join(path, key), f"must be a string, number or boolean, got {describe(item)}")
    return out


def resolve_envs(
    envs: dict[str, str | None],
    secrets: dict[str, str | None],
    overrides: Mapping[str, str],
    issues: Issues,
) -> tuple[dict[str, str], dict[str, str]]:
    """Apply overrides (to ``secrets`` when the key is a secret) and require every value set."""
    for key in envs.keys() & secrets.keys():
        issues.add(join("secrets", key), "is also declared in envs; declare it in one place")
    for key, value in overrides.items():
        if not ENV_NAME.match(key):
            issues.add("--env", f"{key!r} is not a valid environment variable name")
        elif key in secrets:
            secrets[key] = value
        else:
            envs[key] = value
    resolved = []
    for section, values in (("envs", envs), ("secrets", secrets)):
        done: dict[str, str] = {}
        for key, declared in values.items():
            if declared is None and section == "secrets":
                # SkyPilot resolves a null secret at launch from --secret or its managed secrets
                # store; Stratus has no such store, so the value must come with the request.
                issues.add(join(section, key), f"has no value: pass it with --secret {key}=VALUE")
            elif declared is None:
                issues.add(join(section, key), f"has no value: pass it with --env {key}=VALUE")
            else:
                done[key] = declared
        resolved.append(done)
    return resolved[0], resolved[1]
