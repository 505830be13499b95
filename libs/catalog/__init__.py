"""The price catalog: GPU (and GCP N1) offers of AWS, GCP and Azure per region and zone.

The snapshot ships as package data (``data/``, with its README naming source, commit and
date); ``stratus catalog refresh`` writes a newer file per cloud under
``$STRATUS_HOME/catalog/`` that replaces the shipped one for that cloud.
"""

from .config import allowed_clouds, read_config
from .errors import CatalogConfigError, CatalogDataError, CatalogError, RefreshAuthError, RefreshError
from .load import load_catalog
from .model import CLOUDS, SNAPSHOT_DATE, Catalog, Offer, Snapshot

__all__ = [
    "CLOUDS",
    "SNAPSHOT_DATE",
    "Catalog",
    "CatalogConfigError",
    "CatalogDataError",
    "CatalogError",
    "Offer",
    "RefreshAuthError",
    "RefreshError",
    "Snapshot",
    "allowed_clouds",
    "load_catalog",
    "read_config",
]
