"""The ops end-to-end tests' service: one replica of ``python -m http.server``, created through
the API (its request is the root of the ``up`` trace) and waited for until READY."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Stack

ONE = """\
service:
  readiness_probe: /
  replicas: 1
resources:
  ports: 8080
  cpus: 1
run: python -m http.server 8080
"""


def up_one(stack: Stack, name: str, timeout: float = 120) -> dict[str, Any]:
    """Create service ``name`` (ONE) and return it once its replica is READY."""
    r = stack.api("POST", "/v1/services", json={"name": name, "yaml": ONE})
    assert r.status_code == 201, r.text + stack.logs_tail()

    def ready(svc: dict[str, Any]) -> bool:
        return any(x["status"] == "READY" for x in svc["replicas"])

    return stack.wait(name, ready, timeout=timeout, what=f"{name}: a READY replica")
