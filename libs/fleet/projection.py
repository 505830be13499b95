"""The fleet projection as a ``libs.events`` Projection: what every service folds from the log.

It reads only the types the fold handles (``QpsSampled`` and other telemetry are left out in
SQL) and is snapshotted as msgpack under a fingerprint of the code that folds, so a process
starts from the last snapshot and replays only the tail.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from libs.events.projection import Projection
from libs.events.snapshots import SnapshotCodec

from .fold import _HANDLERS, apply, fold
from .state import FleetState

# Everything that decides what a snapshot holds: a change to any of them is a new fingerprint.
_SOURCES = (
    Path(__file__).parent / "fold.py",
    Path(__file__).parent / "fold_base.py",
    Path(__file__).parent / "fold_replicas.py",
    Path(__file__).parent / "state.py",
    Path(__file__).parent / "policy.py",
    Path(__file__).parent / "status.py",
    Path(__file__).parents[1] / "events" / "types.py",
    Path(__file__).parents[1] / "events" / "upcasting.py",
)


def _fingerprint() -> str:
    h = hashlib.sha256()
    for path in _SOURCES:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(FleetState)

FLEET_TYPES = frozenset(str(t.__struct_config__.tag) for t in _HANDLERS)

FLEET_SNAPSHOTS: SnapshotCodec[FleetState] = SnapshotCodec(
    name="fleet", fingerprint=_fingerprint(), encode=_encoder.encode, decode=_decoder.decode
)

FLEET: Projection[FleetState] = Projection(
    initial=FleetState,
    apply=apply,
    fold_batch=lambda state, recs: fold(recs, state),
    types=FLEET_TYPES,
    snapshots=FLEET_SNAPSHOTS,
)
