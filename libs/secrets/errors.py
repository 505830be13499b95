"""Errors of the secrets package.

    SecretsError               base of every error raised by libs.secrets
    ├── KeyFileError           the master key file is unreadable or holds no valid key
    ├── SecretUnreadable       a stored value cannot be decrypted: another key file, or its
    │                          service's data key was deleted (``down --purge``)
    ├── SecretsStoreError      Postgres failed while reading or writing secrets
    └── EndpointTlsInvalid     a service's tls certificate/key pair cannot serve TLS (endpoint.py)

Adapters translate ``cryptography`` and ``asyncpg`` errors into these with ``raise X from exc``.
"""

from __future__ import annotations


class SecretsError(Exception):
    """Base of every error raised by libs.secrets."""


class KeyFileError(SecretsError):
    """The master key file cannot be used (fix or restore it; nothing decrypts without it)."""


class SecretUnreadable(SecretsError):
    """A stored secret does not decrypt with the keys at hand."""


class SecretsStoreError(SecretsError):
    """The secrets tables could not be read or written (Postgres down, or a query failed)."""


class EndpointTlsInvalid(SecretsError):
    """A certificate or key that cannot serve TLS (not PEM, or the key does not match)."""
