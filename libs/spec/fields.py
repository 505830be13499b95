"""Typed reading of YAML values that records every problem against its field path.

Readers return ``None`` when a value is absent or invalid; invalid values also add an issue,
so parsing continues and all problems are reported together.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import Issue


class Issues:
    """The problems found so far, in the order found."""

    def __init__(self) -> None:
        self.items: list[Issue] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(Issue(path, message))

    def failed(self, *paths: str) -> bool:
        """True if any issue concerns one of ``paths`` or a field under it."""
        return any(_under(issue.path, p) for issue in self.items for p in paths)

    def __bool__(self) -> bool:
        return bool(self.items)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def describe(value: object) -> str:
    """A short, safe rendering of a wrong value for an error message."""
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}
    name = "null" if value is None else kind.get(type(value), type(value).__name__)
    if isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 40):
        return f"{name} {value!r}"
    return name


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def check_int(
    value: object, path: str, issues: Issues, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    # bool is an int subclass in Python; YAML `true` is never a count.
    if isinstance(value, bool) or not isinstance(value, int):
        issues.add(path, f"must be an integer, got {describe(value)}")
        return None
    if minimum is not None and value < minimum:
        issues.add(path, f"must be at least {minimum}, got {value}")
        return None
    if maximum is not None and value > maximum:
        issues.add(path, f"must be at most {maximum}, got {value}")
        return None
    return value


def check_str(
    value: object, path: str, issues: Issues, *, choices: Sequence[str] | None = None
) -> str | None:
    if not isinstance(value, str):
        issues.add(path, f"must be a string, got {describe(value)}")
        return None
    if not value.strip():
        issues.add(path, "must not be empty")
        return None
    if choices is not None and value not in choices:
        hint = suggest(value, choices)
        did_you_mean = f"; did you mean {hint}?" if hint else ""
        issues.add(path, f"must be one of {', '.join(choices)}, got {value!r}{did_you_mean}")
        return None
    return value


def check_str_map(value: object, path: str, issues: Issues) -> dict[str, str] | None:
    if not isinstance(value, Mapping):
        issues.add(path, f"must be a mapping of strings to strings, got {describe(value)}")
        return None
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            issues.add(path, f"keys must be non-empty strings, got {describe(key)}")
        elif not isinstance(item, str):
            issues.add(join(path, key), f"must be a string, got {describe(item)}")
        else:
            out[key] = item
    return out


class Section:
    """One mapping of the YAML at ``path``; unknown keys are reported when it is created."""

    def __init__(self, data: Mapping[Any, Any], path: str, issues: Issues, allowed: Sequence[str]) -> None:
        self.data = data
        self.path = path
        self.issues = issues
        for key in data:
            if not isinstance(key, str):
                issues.add(path, f"field names must be strings, got {describe(key)}")
            elif key not in allowed:
                hint = suggest(key, allowed)
                if hint:
                    issues.add(join(path, key), f"unknown field {key!r}; did you mean {hint}?")
                else:
                    issues.add(
                        join(path, key), f"unknown field {key!r}; expected one of {', '.join(allowed)}"
                    )

    @classmethod
    def of(cls, value: object, path: str, issues: Issues, allowed: Sequence[str]) -> Section | None:
        if not isinstance(value, Mapping):
            issues.add(path, f"must be a mapping with fields {', '.join(allowed)}; got {describe(value)}")
            return None
        return cls(value, path, issues, allowed)

    def at(self, name: str) -> str:
        return join(self.path, name)

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str) -> Any:
        return self.data.get(name)

    def integer(self, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
        if name not in self.data:
            return None
        return check_int(self.data[name], self.at(name), self.issues, minimum=minimum, maximum=maximum)

    def number(self, name: str, *, positive: bool = False) -> int | float | None:
        """A finite number (seconds may be fractional): at least 0, or above 0 if ``positive``."""
        if name not in self.data:
            return None
        value = self.data[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.issues.add(self.at(name), f"must be a number of seconds, got {describe(value)}")
            return None
        if positive and value <= 0:
            self.issues.add(self.at(name), f"must be greater than 0, got {value}")
            return None
        if value < 0:
            self.issues.add(self.at(name), f"must be at least 0, got {value}")
            return None
        return value

    def positive_number(self, name: str) -> float | None:
        if name not in self.data:
            return None
        value = self.data[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.issues.add(self.at(name), f"must be a number, got {describe(value)}")
            return None
        if not math.isfinite(value) or value <= 0:
            self.issues.add(self.at(name), f"must be greater than 0, got {value}")
            return None
        return float(value)

    def boolean(self, name: str) -> bool | None:
        if name not in self.data:
            return None
        value = self.data[name]
        if not isinstance(value, bool):
            self.issues.add(self.at(name), f"must be true or false, got {describe(value)}")
            return None
        return value

    def string(self, name: str, *, choices: Sequence[str] | None = None) -> str | None:
        if name not in self.data:
            return None
        return check_str(self.data[name], self.at(name), self.issues, choices=choices)

    def section(self, name: str, allowed: Sequence[str]) -> Section | None:
        if name not in self.data:
            return None
        return Section.of(self.data[name], self.at(name), self.issues, allowed)
