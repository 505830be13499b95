"""The fleet projection as a ``libs.events`` Projection: what every service folds from the log."""

from __future__ import annotations

from libs.events.projection import Projection

from .fold import apply, fold
from .state import FleetState

FLEET: Projection[FleetState] = Projection(
    initial=FleetState, apply=apply, fold_batch=lambda state, recs: fold(recs, state)
)
