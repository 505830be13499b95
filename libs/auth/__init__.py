"""API bearer tokens: random, stored hashed in Postgres, each with a role.

    tokens.py   making and hashing tokens, roles, the principal a token stands for
    store.py    the ``stratus_api_tokens`` table (create, list, revoke, look up, bootstrap)
    files.py    the local admin token file under STRATUS_HOME (mode 0600)
    errors.py   the exception tree

A token is ``stratus_`` + 32 random bytes (urlsafe base64); only its sha256 is stored, so the
table (or a backup of it) does not let anyone in. ``admin`` may read and change everything,
``viewer`` may only read. The first admin token is created by ``bootstrap_admin`` (the API at
start) when the table has no live token, and written to ``STRATUS_HOME/auth/admin.token``,
readable by the stack's user only.
"""

from .errors import AuthError, AuthStoreError, TokenFileError, UnknownToken
from .files import read_token_file, token_file, write_token_file
from .store import (
    TokenInfo,
    bootstrap_admin,
    create_token,
    ensure_schema,
    list_tokens,
    lookup,
    revoke_token,
)
from .tokens import ROLES, Principal, Role, hash_token, new_token

__all__ = [
    "ROLES",
    "AuthError",
    "AuthStoreError",
    "Principal",
    "Role",
    "TokenFileError",
    "TokenInfo",
    "UnknownToken",
    "bootstrap_admin",
    "create_token",
    "ensure_schema",
    "hash_token",
    "list_tokens",
    "lookup",
    "new_token",
    "read_token_file",
    "revoke_token",
    "token_file",
    "write_token_file",
]
