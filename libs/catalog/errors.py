"""Errors of the catalog package.

    CatalogError               base
    ├── CatalogDataError       a catalog file is missing, unreadable or has a malformed row
    ├── CatalogConfigError     ``$STRATUS_HOME/config.yaml`` is unreadable or ``allowed_clouds`` is invalid
    └── RefreshError           a cloud's pricing API failed or answered something unusable
        └── RefreshAuthError   no (or rejected) credentials for the pricing API

Third-party errors (botocore, httpx, OSError, yaml) are translated where they are raised
(``raise RefreshError(...) from exc``).
"""

from __future__ import annotations


class CatalogError(Exception):
    """Base of every error raised by libs.catalog."""


class CatalogDataError(CatalogError):
    """A catalog file could not be read or parsed (the message names the file and row)."""


class CatalogConfigError(CatalogError):
    """The user's config.yaml is unreadable or names an unknown cloud."""


class RefreshError(CatalogError):
    """A pricing API failed; nothing was written."""


class RefreshAuthError(RefreshError):
    """The pricing API needs credentials that are missing or were rejected."""
