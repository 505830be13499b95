"""What the API needs from the outside world, passed to ``create_app`` (no globals)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from libs.events.projection import Projection
from libs.events.store import EventStore
from libs.fleet import FleetState
from libs.fleet.projection import FLEET
from libs.replica_logs import ReplicaLogClient
from libs.runtime.settings import Settings


class FleetView(Protocol):
    """The live fleet projection (``LiveProjection[FleetState]`` fits)."""

    @property
    def state(self) -> FleetState: ...

    @property
    def position(self) -> int: ...

    async def wait_for(self, position: int, timeout: float) -> FleetState: ...  # noqa: ASYNC109


def fleet_projection() -> Projection[FleetState]:
    return FLEET


@dataclass
class ApiDeps:
    store: EventStore
    projection: FleetView
    settings: Settings
    # Replica logs, asked of the provisioner over NATS (None: no bus, the logs routes answer 503).
    replica_logs: ReplicaLogClient | None = None
    # Set when the process is shutting down: open log and event streams end.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    clock: Callable[[], float] = time.time
    # How long a write waits for the projection to include it (read-your-writes).
    consistency_timeout: float = 5.0
    # How often a followed log file or event stream is checked when idle.
    poll_interval: float = 0.25
    # Event stream heartbeat (a blank NDJSON line) so idle followers notice a dead server.
    heartbeat_seconds: float = 15.0
    secrets_schema_ready: bool = False
    # How long the router lets a READY replica's in-flight requests finish when a user
    # terminates it (`stratus down NAME --replica-id N`); the scheduler's STRATUS_DRAIN_SECONDS.
    drain_seconds: float = 30.0
