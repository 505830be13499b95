"""What counts as a secret, and splitting a spec's environment accordingly (pure).

An env value is secret when any of these holds:

1. it is declared under ``secrets:`` in the service YAML;
2. its NAME says so. The name is split into parts on ``_``, ``-``, ``.`` and camelCase
   boundaries (``OPENAI_API_KEY`` -> OPENAI, API, KEY; ``hfToken`` -> HF, TOKEN), and one part
   is a marker: TOKEN, SECRET(S), PASSWORD, PASSWD, PWD, PASS, PASSPHRASE, KEY, APIKEY,
   CREDENTIAL(S), CREDS, AUTH, AUTHORIZATION, PAT, PRIVATE, or a part ends with one of the
   unambiguous ones (``PGPASSWORD``, ``GHTOKEN``, ``MYSECRET``, ``XAPIKEY``). Whole parts only:
   ``MAX_TOKENS``, ``KEYBOARD``, ``PATH``, ``MONKEY`` are not secret.
   A marker does not count when the name is ABOUT the secret rather than the secret itself:
   its last part is a setting word (DELAY, TIMEOUT, TTL, LIMIT, COUNT, SIZE, LENGTH, PREFIX,
   NAME, FILE, PATH, URL, HEADER, ENABLED, ...; see ``NOT_THE_VALUE``) or its first part is a
   quantity (MAX, MIN, NUM). So ``TOKEN_DELAY``, ``KEY_PREFIX``, ``AUTH_ENABLED``,
   ``MAX_TOKEN``, ``SSH_KEY_PATH`` are plain envs; ``HF_TOKEN``, ``GITHUB_PAT``, ``DB_PWD``,
   ``AUTHORIZATION``, ``AWS_ACCESS_KEY_ID`` are secrets. ``PWD``/``OLDPWD`` alone are the
   shell's working directories, not passwords.
3. its VALUE is a URL carrying a password (``scheme://user:pass@host``, e.g. a
   ``DATABASE_URL``), whatever its name.

Every readiness probe header value (``service.readiness_probe.headers``, typically
``Authorization: Bearer ...``) is secret too: events keep the header names only.

When in doubt the rule leans to secret: a redacted value costs a look at ``stratus up``'s plan,
a leaked one costs a rotation. Declare a value under ``secrets:`` to make it secret regardless.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REDACTED = "<redacted>"

SECRET_PARTS: frozenset[str] = frozenset(
    {
        "TOKEN", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PWD", "PASS", "PASSPHRASE", "KEY", "APIKEY",
        "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTH", "AUTHORIZATION", "PAT", "PRIVATE",
    }
)  # fmt: skip
# Markers long and specific enough to count at the end of a part: PGPASSWORD, HFTOKEN.
SECRET_SUFFIXES: tuple[str, ...] = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "APIKEY", "PASSPHRASE")
# A last part saying the variable configures something about a secret, not the secret itself.
NOT_THE_VALUE: frozenset[str] = frozenset(
    {
        "DELAY", "TIMEOUT", "TTL", "INTERVAL", "SECONDS", "SECS", "MS", "EXPIRY", "EXPIRES", "LIFETIME",
        "LIMIT", "LIMITS", "COUNT", "SIZE", "LEN", "LENGTH", "BUDGET", "RATE", "PREFIX", "SUFFIX",
        "NAME", "TYPE", "MODE", "HEADER", "FIELD", "ALGORITHM", "FORMAT", "FILE", "PATH", "DIR", "URL",
        "URI", "ENDPOINT", "HOST", "PORT", "ENABLED", "DISABLED", "REQUIRED", "ENABLE", "DISABLE",
    }
)  # fmt: skip
QUANTITY_FIRST: frozenset[str] = frozenset({"MAX", "MIN", "NUM"})
SHELL_DIRS: frozenset[str] = frozenset({"PWD", "OLDPWD"})

_PART_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# scheme://[user]:password@  (the password non-empty; no '@', '/', '?', '#' or space before it)
_URL_WITH_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]*:[^\s/?#@]+@")


def name_parts(name: str) -> list[str]:
    """``OPENAI_API_KEY`` -> [OPENAI, API, KEY]; ``hfToken`` -> [HF, TOKEN]."""
    return [p.upper() for p in _PART_SPLIT.split(name) if p]


def _is_marker(part: str) -> bool:
    return part in SECRET_PARTS or part.endswith(SECRET_SUFFIXES)


def looks_secret(name: str) -> bool:
    """True when an env var's NAME says its value is a secret (rule 2 of the module docstring)."""
    if name.upper() in SHELL_DIRS:
        return False
    parts = name_parts(name)
    if not any(_is_marker(p) for p in parts):
        return False
    return not (parts[-1] in NOT_THE_VALUE or parts[0] in QUANTITY_FIRST)


def looks_secret_value(value: str) -> bool:
    """True when a VALUE carries a URL with a password (rule 3 of the module docstring)."""
    return _URL_WITH_PASSWORD.search(value) is not None


def is_secret_env(name: str, value: str) -> bool:
    return looks_secret(name) or looks_secret_value(value)


@dataclass(frozen=True, slots=True)
class SplitEnvs:
    """A spec's environment split into what may be logged and what may not."""

    public: dict[str, str]
    secret: dict[str, str]
    probe_headers: dict[str, str] = field(default_factory=dict)  # every value is secret

    @property
    def secret_names(self) -> list[str]:
        return sorted(self.secret)


def split_envs(
    envs: Mapping[str, str], secrets: Mapping[str, str], *, probe_headers: Mapping[str, str] | None = None
) -> SplitEnvs:
    """Split a spec's ``envs`` and ``secrets`` by the rule; readiness probe headers are all secret."""
    public = {k: v for k, v in envs.items() if not is_secret_env(k, v)}
    secret = {k: v for k, v in envs.items() if k not in public}
    secret.update(secrets)
    return SplitEnvs(public=public, secret=secret, probe_headers=dict(probe_headers or {}))


def redact_spec_dict(spec: Mapping[str, Any], split: SplitEnvs) -> dict[str, Any]:
    """The spec dict an event may carry: public envs only, secret NAMES and probe header NAMES
    with ``"<redacted>"`` values (``service.headers`` of the normalized spec)."""
    out = dict(spec)
    out["envs"] = dict(split.public)
    out["secrets"] = {name: REDACTED for name in split.secret_names}
    service = out.get("service")
    if isinstance(service, Mapping) and isinstance(service.get("headers"), Mapping):
        out["service"] = {**service, "headers": {str(name): REDACTED for name in service["headers"]}}
    return out
