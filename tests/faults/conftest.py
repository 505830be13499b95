"""The fault matrix's stack: two instances of every service and of the relay, with a
nats-server of the stack's own (so a test may kill it, and wipe its store), on the session's
Postgres in a database of its own (the machine's Postgres is never killed)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from libs.servers.ports import free_port
from tests.e2e.conftest import Stack, stack_db
from tests.e2e.scaling import FAST_ENV

__all__ = ["ha_stack", "stack_db"]

LEASE_TTL = 2.0


@pytest.fixture(scope="module")
def ha_stack(tmp_path_factory: pytest.TempPathFactory, stack_db: str) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stratus-ha")
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}  # the stack runs its own
    env.update({
        "STRATUS_HOME": str(home),
        "DATABASE_URL": stack_db,
        "STRATUS_API_URL": f"http://127.0.0.1:{free_port()}",
        "STRATUS_BUS_PREFIX": f"ha{uuid.uuid4().hex[:8]}",
        "STRATUS_ROUTER_ID": f"router-ha-{uuid.uuid4().hex[:6]}",
        "STRATUS_INSTANCES": "2",
        "STRATUS_LEASE_TTL": str(LEASE_TTL),
        "STRATUS_LEASE_RENEW": "0.5",
        "STRATUS_SNAPSHOT_INTERVAL": "5",
        "STRATUS_TRACKING_PRUNE_INTERVAL": "2",
        "PYTHONUNBUFFERED": "1",
        **FAST_ENV,
    })  # fmt: skip
    s = Stack(home, env)
    s.start(timeout=180)
    try:
        yield s
    finally:
        s.stop()
