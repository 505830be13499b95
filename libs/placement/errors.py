"""Errors of the placement package.

    PlacementError        base
    └── NoOffer           nothing in the catalog (over the allowed clouds) satisfies the resources

The pure optimizer never raises for a spec it cannot place (it returns ``Unplaceable``);
``preview`` raises ``NoOffer`` so that ``up`` can refuse the spec with the reason.
"""

from __future__ import annotations


class PlacementError(Exception):
    """Base of every error raised by libs.placement."""


class NoOffer(PlacementError):
    """The catalog has no offer for the spec's resources; the message says what it does have."""
