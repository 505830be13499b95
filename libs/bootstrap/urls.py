"""Where a cloud VM redeems its bootstrap token: HTTPS, or plain HTTP to loopback only (pure).

The answer carries the replica's secret envs and its log token, so it must not cross a network
in clear text: ``check_url`` refuses ``http://`` to any host but a loopback one (``localhost``,
127.0.0.0/8, ::1: the API on the same machine, as in tests and ``stratus local``).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .errors import BootstrapUrlError


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """``url`` if a VM may fetch its secrets there; ``BootstrapUrlError`` saying why not."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise BootstrapUrlError(
            f"bootstrap URL {url!r} (STRATUS_BOOTSTRAP_URL) is not an http(s) URL with a host"
        )
    if parts.scheme == "http" and not is_loopback(host):
        raise BootstrapUrlError(
            f"bootstrap URL {url!r} (STRATUS_BOOTSTRAP_URL) is plain http to {host}: TLS is required "
            "off loopback, since the answer carries the replica's secrets. Serve the API over HTTPS "
            "(STRATUS_API_TLS_CERTFILE/KEYFILE, or a TLS proxy in front) and set STRATUS_BOOTSTRAP_URL "
            "to its https:// address (docs/security.md)"
        )
    return url
