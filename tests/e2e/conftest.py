"""End-to-end fixtures: the whole stack (supervisor + six services + relay) as real processes,
on the session's NATS and a database of its own, driven through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from libs.servers.ports import free_port

REPO = Path(__file__).resolve().parents[2]


class Stack:
    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return self.env["STRATUS_API_URL"]

    def start(self, timeout: float = 90) -> None:
        log = open(self.home / "supervisor.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "libs.runtime.stack"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the stack did not come up:\n{self.logs_tail()}")

    def logs_tail(self) -> str:
        out = []
        for f in sorted((self.home / "logs").glob("*.log")):
            out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-1500:]}")
        return "\n".join(out)

    def cli(self, *args: str, timeout: float = 180, check: bool = False) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", "services.api.cli", *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, cwd=REPO,
        )  # fmt: skip
        if check and r.returncode != 0:
            raise AssertionError(
                f"stratus {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}\n{self.logs_tail()}"
            )
        return r

    def api(self, method: str, path: str, *, retry_for: float = 0.0, **kw: Any) -> httpx.Response:
        """One API request; with ``retry_for``, connection errors are retried that long (an API
        being restarted by the supervisor)."""
        deadline = time.monotonic() + retry_for
        # The admin token the API wrote at its first start (the CLI reads the same file).
        kw["headers"] = {**self.auth(), **kw.get("headers", {})}
        while True:
            try:
                return httpx.request(method, f"{self.api_url}{path}", timeout=10, **kw)
            except httpx.TransportError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def token(self) -> str:
        return (self.home / "auth" / "admin.token").read_text().strip()

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def service(self, name: str, retry_for: float = 30.0) -> dict[str, Any]:
        r = self.api("GET", f"/v1/services/{name}", retry_for=retry_for)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def wait(
        self, name: str, pred: Any, timeout: float = 90, what: str = "", interval: float = 0.25
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        svc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            svc = self.service(name, retry_for=max(1.0, deadline - time.monotonic()))
            if pred(svc):
                return svc
            time.sleep(interval)
        raise AssertionError(
            f"timed out waiting for {what or pred}: {json.dumps(svc)[:2000]}\n{self.logs_tail()}"
        )

    def supervisor_state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.home / "run" / "supervisor.json").read_text())
        return data

    def component_pid(self, name: str) -> int:
        pid = self.supervisor_state()["components"][name]["pid"]
        assert isinstance(pid, int)
        return pid

    def kill_component(self, name: str, timeout: float = 30) -> int:
        """``kill -9`` one component's process, then wait until the supervisor has started a
        new one; returns the new pid."""
        old = self.component_pid(name)
        restarts = self.supervisor_state()["components"][name]["restarts"]
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = self.supervisor_state()["components"][name]
            except (OSError, ValueError):  # replaced while we read it
                info = {}
            pid = info.get("pid")
            if isinstance(pid, int) and pid != old and info.get("restarts", 0) > restarts:
                return pid
            time.sleep(0.1)
        raise AssertionError(f"the supervisor did not restart {name} within {timeout}s:\n{self.logs_tail()}")

    def events(self, service: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = 0
        for _ in range(100):
            params = {"service": service, "after": after, "limit": 500}
            r = self.api("GET", "/v1/events", params=params, retry_for=30)
            r.raise_for_status()
            page = r.json()
            out.extend(page["events"])
            if not page.get("has_more"):
                break
            after = page["next_after"]
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.cli("local", "down", timeout=60)  # terminates any replica left behind
        if self.env.get("NATS_URL") and self.env.get("STRATUS_BUS_PREFIX"):  # a shared NATS: our stream
            from tests.conftest import delete_streams, stack_stream

            delete_streams(self.env["NATS_URL"], [stack_stream(self.env["STRATUS_BUS_PREFIX"])])


def replica_processes(instance_id: str) -> list[psutil.Process]:
    """Processes carrying the local provider's marker for this instance."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("STRATUS_INSTANCE_ID") == instance_id:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture(scope="module")
async def stack_db(postgres_admin_url: str) -> AsyncIterator[str]:
    from tests.conftest import _create_database, _drop_database, _with_database

    name = await _create_database(postgres_admin_url)
    try:
        yield _with_database(postgres_admin_url, name)
    finally:
        await _drop_database(postgres_admin_url, name)


# Control loops fast enough for a test: probes, health checks and resyncs under a second or so,
# a relaunch after a failure in 1 s, 2 s, 4 s... (5 s, 10 s... by default).
FAST_LOOPS = {
    "STRATUS_PROBE_INTERVAL": "0.5",
    "STRATUS_MONITOR_INTERVAL": "0.5",
    "STRATUS_RESYNC_INTERVAL": "1.0",
    "STRATUS_DRAIN_SECONDS": "2",
    "STRATUS_RETRY_BACKOFF_SECONDS": "1",
}


@contextmanager
def running_stack(
    home: Path,
    nats_url: str,
    db_url: str,
    knobs: Mapping[str, str] | None = None,
    *,
    inherit: Mapping[str, str] = os.environ,
) -> Iterator[Stack]:
    """The whole stack under ``home``, on the session's NATS (a stream of its own) and ``db_url``,
    with ``inherit`` (the environment by default) under FAST_LOOPS under ``knobs``; stopped after."""
    env = {
        **inherit,
        "STRATUS_HOME": str(home),
        "NATS_URL": nats_url,
        "DATABASE_URL": db_url,
        "STRATUS_API_URL": f"http://127.0.0.1:{free_port()}",
        "STRATUS_BUS_PREFIX": f"e2e{uuid.uuid4().hex[:8]}",
        "STRATUS_ROUTER_ID": f"router-e2e-{uuid.uuid4().hex[:6]}",
        "PYTHONUNBUFFERED": "1",
        **FAST_LOOPS,
        **(knobs or {}),
    }
    s = Stack(home, env)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, nats_url: str, stack_db: str) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stratus-home"), nats_url, stack_db) as s:
        yield s
