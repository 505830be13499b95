"""One-time bootstrap tokens: how a cloud instance gets its secrets without them in its metadata.

tokens.py  the table, ``issue`` / ``redeem`` / ``log_token_for``, the pure ``refusal``
errors.py  the exception tree
"""

from .errors import BootstrapError, BootstrapStoreError, TokenExpired, TokenRefused, TokenUnknown, TokenUsed
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

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "BootstrapError",
    "BootstrapStoreError",
    "Issued",
    "Redeemed",
    "TokenExpired",
    "TokenRefused",
    "TokenUnknown",
    "TokenUsed",
    "ensure_schema",
    "issue",
    "log_token_for",
    "redeem",
    "refusal",
]
