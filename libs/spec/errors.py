"""Errors of the spec package.

    SpecError                  base; carries every problem found as ``issues`` [(path, message)]
    ├── SpecFileError          the file could not be read (missing, a directory, not UTF-8)
    ├── SpecSyntaxError        the text is not valid YAML (line and column in the message)
    ├── SpecValidationError    valid YAML, but fields are unknown, missing or invalid
    └── EnvOverrideError       a ``--env`` override is malformed (``KEY=VALUE`` expected)

A path names the field as the user wrote it: ``service.replica_policy.max_replicas``,
``resources.any_of[1].cloud``, ``envs.HF_TOKEN``; ``""`` means the document itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple


class Issue(NamedTuple):
    """One problem: the field path it concerns and the rule it breaks."""

    path: str
    message: str


class SpecError(ValueError):
    """Base of every error raised by libs.spec; ``str()`` lists all issues, one a line."""

    def __init__(
        self,
        issues: Iterable[Issue],
        *,
        source: str = "<string>",
        lines: Mapping[str, int] | None = None,
    ) -> None:
        self.issues: list[Issue] = list(issues)
        self.source = source
        self._lines = dict(lines or {})
        super().__init__(self._render())

    def line_of(self, path: str) -> int | None:
        """The YAML line of ``path`` or of its closest ancestor that has one."""
        while path:
            if path in self._lines:
                return self._lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None

    def _render(self) -> str:
        rendered = []
        # By line, so the list reads top to bottom like the file; line-less issues last.
        for path, message in sorted(self.issues, key=lambda i: self.line_of(i.path) or 1 << 30):
            line = self.line_of(path)
            where = path
            if line is not None:
                where = f"{path} (line {line})" if path else f"line {line}"
            rendered.append(f"{where}: {message}" if where else message)
        if len(rendered) == 1:
            return f"{self.source}: {rendered[0]}"
        body = "\n".join(f"  - {r}" for r in rendered)
        return f"{self.source}: {len(rendered)} errors:\n{body}"


class SpecFileError(SpecError):
    """The spec file could not be read."""


class SpecSyntaxError(SpecError):
    """The text is not valid YAML."""

    def __init__(self, message: str, *, source: str, line: int | None, column: int | None) -> None:
        self.line = line
        self.column = column
        super().__init__([Issue("", message)], source=source)


class SpecValidationError(SpecError):
    """The YAML parsed, but does not describe a valid service."""


class EnvOverrideError(SpecError):
    """A ``--env KEY=VALUE`` override is malformed."""
