"""What counts as a secret, and splitting a spec's environment accordingly (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REDACTED = "<redacted>"

SECRET_NAME_MARKERS: tuple[str, ...] = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL")


def looks_secret(name: str) -> bool:
    """True when an env var's NAME says its value is a secret."""
    upper = name.upper()
    return any(marker in upper for marker in SECRET_NAME_MARKERS)


@dataclass(frozen=True, slots=True)
class SplitEnvs:
    """A spec's environment split into what may be logged and what may not."""

    public: dict[str, str]
    secret: dict[str, str]

    @property
    def secret_names(self) -> list[str]:
        return sorted(self.secret)


def split_envs(envs: Mapping[str, str], secrets: Mapping[str, str]) -> SplitEnvs:
    public = {k: v for k, v in envs.items() if not looks_secret(k)}
    secret = {k: v for k, v in envs.items() if looks_secret(k)}
    secret.update(secrets)
    return SplitEnvs(public=public, secret=secret)


def redact_spec_dict(spec: Mapping[str, Any], split: SplitEnvs) -> dict[str, Any]:
    """The spec dict an event may carry: public envs only, every secret NAME redacted."""
    out = dict(spec)
    out["envs"] = dict(split.public)
    out["secrets"] = {name: REDACTED for name in split.secret_names}
    return out
