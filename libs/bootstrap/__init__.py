"""One-time bootstrap tokens: how a cloud instance gets its secrets without them in its metadata.

tokens.py  the table, ``issue`` / ``redeem`` / ``log_token_for``, the pure ``refusal``
urls.py    ``check_url``: where a VM may fetch its secrets (HTTPS, or HTTP on loopback)
errors.py  the exception tree
"""

from .errors import (
    BootstrapError,
    BootstrapStoreError,
    BootstrapUrlError,
    TokenExpired,
    TokenRefused,
    TokenUnknown,
    TokenUsed,
)
from .tokens import (
    DEFAULT_TTL_SECONDS,
    Issued,
    Redeemed,
    ensure_schema,
    issue,
    log_token_for,
    redeem,
    refusal,
)
from .urls import check_url

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "BootstrapError",
    "BootstrapStoreError",
    "BootstrapUrlError",
    "Issued",
    "Redeemed",
    "TokenExpired",
    "TokenRefused",
    "TokenUnknown",
    "TokenUsed",
    "check_url",
    "ensure_schema",
    "issue",
    "log_token_for",
    "redeem",
    "refusal",
]
