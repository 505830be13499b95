"""Errors of the prober: why a probe request got no HTTP status.

    ProbeError                 base; ``str()`` is the short reason recorded in events
    ├── ProbeTimeout           no answer within the probe's timeout
    ├── ProbeRefused           nothing listens there (connection refused, no socket file)
    ├── ProbeReset             the connection was reset mid-request
    ├── ProbeInvalidResponse   the answer was not valid HTTP
    └── ProbeTransportError    any other transport failure (the detail names it)

``http_probe.py`` translates httpx and OS errors into these (``raise X from exc``); the pure
decision module (``decide.py``) sees only these.
"""

from __future__ import annotations


class ProbeError(Exception):
    """A probe request failed before any HTTP status arrived."""


class ProbeTimeout(ProbeError):
    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        super().__init__(f"timeout after {timeout_seconds:g}s")


class ProbeRefused(ProbeError):
    def __init__(self) -> None:
        super().__init__("connection refused")


class ProbeReset(ProbeError):
    def __init__(self) -> None:
        super().__init__("connection reset")


class ProbeInvalidResponse(ProbeError):
    def __init__(self) -> None:
        super().__init__("invalid HTTP response")


class ProbeTransportError(ProbeError):
    """Carries a short description (exception class and message) of what failed."""
