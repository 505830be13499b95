"""Errors of the auth package.

    AuthError
    ├── AuthStoreError     the tokens table could not be read or written (asyncpg errors)
    ├── UnknownToken       no live token has that id (revoking, or a revoked one)
    └── TokenFileError     the local token file cannot be read or written safely

asyncpg and OS errors are translated into these where they happen (``raise X from exc``).
"""

from __future__ import annotations


class AuthError(Exception):
    """Base of every error raised by libs.auth."""


class AuthStoreError(AuthError):
    """The tokens table is unreachable or refused the statement."""


class UnknownToken(AuthError):
    """No token with that id (or it is revoked already)."""


class TokenFileError(AuthError):
    """The token file is missing, unreadable, or readable by others."""
