"""Errors of the bootstrap tokens.

    BootstrapError          base of every error raised by libs.bootstrap
    ├── TokenRefused        the token cannot be redeemed; ``reason`` says which case
    │   ├── TokenUnknown    no such token (never issued, or mistyped)
    │   ├── TokenUsed       it was redeemed already (a token works exactly once)
    │   └── TokenExpired    its time ran out before anyone redeemed it
    ├── ClusterNotReady     a multi-node replica's node IPs are not recorded yet: retry (the token
    │                       is not used up by the attempt)
    ├── BootstrapStoreError Postgres failed while issuing or redeeming
    └── BootstrapUrlError   a VM may not fetch its secrets at that URL (plain http off loopback)

asyncpg errors are translated into ``BootstrapStoreError`` with ``raise X from exc``.
"""

from __future__ import annotations


class BootstrapError(Exception):
    """Base of every error raised by libs.bootstrap."""


class TokenRefused(BootstrapError):
    reason = "refused"


class TokenUnknown(TokenRefused):
    reason = "unknown"


class TokenUsed(TokenRefused):
    reason = "used"


class TokenExpired(TokenRefused):
    reason = "expired"


class ClusterNotReady(BootstrapError):
    """A node of a multi-node replica asked before the provisioner recorded every node's IP."""


class BootstrapStoreError(BootstrapError):
    """The tokens table could not be read or written."""


class BootstrapUrlError(BootstrapError):
    """The bootstrap URL is unusable: not http(s), or plain http to a host that is not loopback."""
