"""The fault matrix's stack: two instances of every service and of the relay, with a
nats-server and a Postgres of the stack's own, supervised like its other components (so a test
may kill -9 either and see it restarted, and wipe NATS's store). The machine's shared servers
are never killed."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest

from libs.servers.ports import free_port
from tests.e2e.conftest import Stack
from tests.e2e.scaling import FAST_ENV

__all__ = ["ha_stack", "stack_database"]

LEASE_TTL = 2.0


@pytest.fixture(scope="module")
def ha_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stratus-ha")
    # The stack runs its own nats-server and Postgres (libs/runtime/stack.py).
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env.update({
        "STRATUS_HOME": str(home),
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


def stack_database(stack: Stack) -> str:
    """The URL of the stack's own Postgres (written by the stack at its start)."""
    env: dict[str, str] = json.loads((stack.home / "run" / "env.json").read_text())
    return env["DATABASE_URL"]
