"""The JSON-able form of a spec (what events carry) and back.

Secret values never leave by default: ``secrets`` and readiness probe ``headers`` values are
replaced with ``"<redacted>"``; services that need them get them from the secret store
(libs.secrets), not from events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from .errors import Issue, SpecValidationError
from .model import REDACTED, ServiceSpec
from .validate import validate_spec

_AT = re.compile(r" - at `\$\.?(.*)`$")


def spec_to_dict(spec: ServiceSpec, *, include_secrets: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(spec)
    if not include_secrets:
        out["secrets"] = {key: REDACTED for key in spec.secrets}
        out["service"]["headers"] = {key: REDACTED for key in spec.service.headers}
    return out


def spec_from_dict(data: Mapping[str, Any]) -> ServiceSpec:
    """Rebuild a spec from ``spec_to_dict`` output, checking types and cross-field rules."""
    try:
        spec = msgspec.convert(data, ServiceSpec)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _AT.search(message)
        path = match.group(1) if match else ""
        raise SpecValidationError([Issue(path, _AT.sub("", message))], source="<dict>") from exc
    problems = validate_spec(spec)
    if problems:
        raise SpecValidationError(problems, source="<dict>")
    return spec
