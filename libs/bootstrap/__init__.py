"""One-time bootstrap tokens: how a cloud instance gets its secrets without them in its metadata.

tokens.py  the table, ``issue`` / ``redeem`` / ``set_node_ips`` / ``log_token_for`` /
           ``node_log_tokens``, the pure ``refusal`` and ``cluster_ready``
urls.py    ``check_url``: where a VM may fetch its secrets (HTTPS, or HTTP on loopback)
errors.py  the exception tree
"""

from .errors import (
    BootstrapError,
    BootstrapStoreError,
    BootstrapUrlError,
    ClusterNotReady,
    TokenExpired,
    TokenRefused,
    TokenUnknown,
    TokenUsed,
)
from .tokens import (
    DEFAULT_TTL_SECONDS,
    Issued,
    NodeLogAccess,
    Redeemed,
    cluster_ready,
    ensure_schema,
    issue,
    log_token_for,
    node_log_tokens,
    redeem,
    refusal,
    set_node_ips,
)
from .urls import check_url

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "BootstrapError",
    "BootstrapStoreError",
    "BootstrapUrlError",
    "ClusterNotReady",
    "Issued",
    "NodeLogAccess",
    "Redeemed",
    "TokenExpired",
    "TokenRefused",
    "TokenUnknown",
    "TokenUsed",
    "check_url",
    "cluster_ready",
    "ensure_schema",
    "issue",
    "log_token_for",
    "node_log_tokens",
    "redeem",
    "refusal",
    "set_node_ips",
]
