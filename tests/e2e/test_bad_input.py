"""Bad input gets clear errors through the real CLI: an invalid YAML, unknown services and
replicas, and a run command that exits at once (the replica FAILED, its log kept, the service
saying why it stopped launching)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Stack

WEB = """\
service:
  readiness_probe: /
  replicas: 2
resources:
  ports: 8080
workdir: {workdir}
run: python3 -m http.server 8080
"""

CRASH = """\
service:
  readiness_probe: /
  replicas: 1
resources:
  ports: 8080
run: |
  python3 -c "import sys; print('boom'); sys.exit(3)"
"""


@pytest.fixture(scope="module")
def web(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A healthy service, deployed in the background while the first tests run."""
    root = tmp_path_factory.mktemp("web")
    (root / "site").mkdir()
    (root / "site" / "index.html").write_text("<p>web</p>\n")
    spec = root / "web.yaml"
    spec.write_text(WEB.format(workdir=root / "site"))
    stack.cli("up", str(spec), "-n", "web", "-y", "--detach", check=True)
    yield "web"


def last_position(stack: Stack) -> int:
    r = stack.api("GET", "/v1/events", params={"last": 1}, retry_for=30)
    r.raise_for_status()
    events = r.json()["events"]
    return int(events[-1]["position"]) if events else 0


def err(r: Any) -> str:
    return str(r.stderr)


def test_invalid_yaml_names_the_field(stack: Stack, tmp_path: Path) -> None:
    cases = {
        "service:\n  readiness_probe: /\n  replicas: two\nrun: python3 -m http.server 8080\n": (
            "service.replicas",
            "line 3",
        ),
        "service:\n  readiness_probe:\n    path: /\n    initial_delay_seconds: -5\n  replicas: 1\n"
        "run: python3 -m http.server 8080\n": ("service.readiness_probe.initial_delay_seconds", "line 4"),
    }
    for i, (text, (field, line)) in enumerate(cases.items()):
        spec = tmp_path / f"bad{i}.yaml"
        spec.write_text(text)
        r = stack.cli("up", str(spec), "-n", f"bad{i}", "-y", timeout=60)
        assert r.returncode == 1, r.stdout + r.stderr
        assert field in err(r) and line in err(r) and str(spec) in err(r), err(r)
        assert "Traceback" not in err(r)
        # Nothing was recorded.
        assert stack.api("GET", f"/v1/services/bad{i}").status_code == 404


def test_unknown_service_is_named(stack: Stack) -> None:
    for args in (
        ["status", "no-such-svc"],
        ["status", "--endpoint", "no-such-svc"],
        ["down", "no-such-svc", "-y"],
        ["down", "no-such-svc", "--replica-id", "1", "-y"],
        ["logs", "no-such-svc", "1", "--no-follow"],
        ["logs", "no-such-svc", "--controller", "--no-follow"],
        ["debug", "preempt", "no-such-svc", "1"],
    ):
        r = stack.cli(*args, timeout=60)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "'no-such-svc' not found" in err(r), (args, err(r))
        assert "Traceback" not in err(r)


def test_unknown_replica_lists_the_existing_ones(stack: Stack, web: str) -> None:
    stack.wait(
        web, lambda s: {r["replica_id"] for r in s["replicas"]} == {1, 2}, timeout=60, what="replicas 1 and 2"
    )
    for args in (
        ["down", web, "--replica-id", "7", "-y"],
        ["logs", web, "7", "--no-follow"],
        ["debug", "preempt", web, "7"],
    ):
        r = stack.cli(*args, timeout=60)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert f"'{web}' has no replica 7" in err(r), (args, err(r))
        assert "its replicas: 1, 2" in err(r), (args, err(r))
    # The service is untouched.
    svc = stack.wait(web, lambda s: s["status"] == "READY", timeout=60, what="web READY")
    assert sorted(r["replica_id"] for r in svc["replicas"]) == [1, 2]


def test_run_command_that_exits_at_once(stack: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "crash.yaml"
    spec.write_text(CRASH)
    started = time.monotonic()
    r = stack.cli("up", str(spec), "-n", "crash", "-y", "--timeout", "90", timeout=120)
    assert time.monotonic() - started < 60, "`up` took long to notice the failure"
    # `up` exits 1 and says why.
    assert r.returncode == 1, r.stdout + r.stderr
    assert "'crash' is FAILED" in err(r), err(r)
    assert "exited with code 3" in err(r), err(r)
    assert "stopped launching" in err(r), err(r)

    svc = stack.service("crash")
    assert svc["status"] == "FAILED"
    reason = svc["status_reason"]
    assert "exited with code 3" in reason, reason
    # One replica at a time: launched, FAILED, replaced, three times; then no more.
    assert "3 consecutive failures" in reason, reason
    assert "stopped launching" in reason, reason
    assert svc["replicas"], svc
    assert all(r["status"] == "FAILED" for r in svc["replicas"]), svc["replicas"]
    assert all("exited with code 3" in (r["status_reason"] or "") for r in svc["replicas"]), [
        (r["replica_id"], r["status_reason"]) for r in svc["replicas"]
    ]

    # It stopped launching: no replica is scheduled any more.
    scheduled = [e for e in stack.events("crash") if e["type"] == "ReplicaScheduled"]
    time.sleep(2)
    assert [e for e in stack.events("crash") if e["type"] == "ReplicaScheduled"] == scheduled
    assert [e["data"]["replica_id"] for e in scheduled] == [1, 2, 3]

    # `stratus status` says why.
    out = stack.cli("status", "crash", check=True).stdout
    assert "FAILED" in out and "exited with code 3" in out and "stopped launching" in out, out

    # Every failed replica's log is kept and readable.
    for rep in svc["replicas"]:
        r = stack.cli("logs", "crash", str(rep["replica_id"]), "--no-follow", timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "boom" in r.stdout, r.stdout
        assert "exited with code 3" in r.stdout, r.stdout

    assert stack.cli("down", "crash", "-y").returncode == 0
    stack.wait("crash", lambda s: s["status"] == "TERMINATED", timeout=60, what="TERMINATED")


def test_the_stack_refuses_anonymous_and_cross_site_writes(stack: Stack, tmp_path: Path) -> None:
    before = last_position(stack)
    spec = WEB.format(workdir=tmp_path)
    anonymous = httpx.post(f"{stack.api_url}/v1/services", json={"name": "anon", "yaml": spec}, timeout=10)
    assert anonymous.status_code == 401, anonymous.text
    # What a web page could send from a browser: text/plain, a foreign Origin, no token.
    browser = {"Content-Type": "text/plain", "Origin": "https://evil.example"}
    cross = httpx.post(f"{stack.api_url}/v1/services?name=x", content=spec, headers=browser, timeout=10)
    assert cross.status_code == 415 and "access-control-allow-origin" not in cross.headers
    huge = httpx.post(
        f"{stack.api_url}/v1/services", content=b"{" + b" " * (50 * 1024 * 1024) + b"}",
        headers={"Content-Type": "application/json", **stack.auth()}, timeout=10,
    )  # fmt: skip
    assert huge.status_code == 413
    assert last_position(stack) == before
    # The CLI needed no setup: the API wrote the admin token into STRATUS_HOME at its first start.
    me = stack.cli("auth", "whoami", check=True)
    assert "role admin" in me.stdout
    token = stack.token()
    for log in (stack.home / "logs").glob("*.log"):
        assert token not in log.read_text(errors="replace"), log.name
