"""Placement across clouds (pure): the cheapest catalog offer that satisfies a service's
resources over the allowed and enabled clouds, with failover away from locations that failed.

Used by the scheduler (each replica) and the API (``up`` validation and ``--dry-run``); it
reads the catalog (``libs.catalog``) and the fleet's recorded facts, and never calls a cloud.
"""

from .choose import DYNAMIC_FALLBACK, Block, Chosen, Unplaceable, ZoneKey, blocks_from, place
from .errors import NoOffer, PlacementError
from .explain import explain, explain_request
from .match import LOCAL, LOCAL_OFFER, describe_request, matches, size_ok
from .preview import placement_json, placement_line, preview, preview_in, usable_clouds

__all__ = [
    "DYNAMIC_FALLBACK",
    "LOCAL",
    "LOCAL_OFFER",
    "Block",
    "Chosen",
    "NoOffer",
    "PlacementError",
    "Unplaceable",
    "ZoneKey",
    "blocks_from",
    "describe_request",
    "explain",
    "explain_request",
    "matches",
    "place",
    "placement_json",
    "placement_line",
    "preview",
    "preview_in",
    "size_ok",
    "usable_clouds",
]
