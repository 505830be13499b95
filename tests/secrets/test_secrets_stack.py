"""The whole stack (issue 8's "done when"): a deployed spec with probe header
``Authorization: Bearer <value>`` and env ``HF_TOKEN=<value>``. Neither value appears in
``stratus events --json``, in the event table or under ``STRATUS_HOME/logs``; the probe still
sends the header (the replica answers 200 only to it), and ``down --purge`` drops the data key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.e2e.conftest import Stack, stack, stack_db

__all__ = ["stack", "stack_db"]

HEADER_SECRET = "probe-e2e-6613"
TOKEN_SECRET = "hf_e2e_stack_2290"

SERVER = """\
import http.server, os

EXPECTED = os.environ["EXPECTED_AUTH"]
assert os.environ["HF_TOKEN"].startswith("hf_")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.headers.get("Authorization") == EXPECTED
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


def spec(workdir: Path) -> str:
    return f"""\
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 60
    headers:
      Authorization: Bearer {HEADER_SECRET}
  replicas: 1
resources:
  ports: 8080
envs:
  HF_TOKEN: {TOKEN_SECRET}
secrets:
  EXPECTED_AUTH: Bearer {HEADER_SECRET}
workdir: {workdir}
run: python server.py
"""


async def test_no_secret_value_in_events_or_logs_and_the_probe_sends_it(
    stack: Stack, stack_db: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "app"
    workdir.mkdir()
    (workdir / "server.py").write_text(SERVER)
    (tmp_path / "svc.yaml").write_text(spec(workdir))
    r = stack.cli("up", str(tmp_path / "svc.yaml"), "-n", "sec", "-y", "--timeout", "120")
    assert r.returncode == 0, r.stdout + r.stderr + stack.logs_tail()
    stack.wait("sec", lambda s: any(x["status"] == "READY" for x in s["replicas"]), what="a READY replica")

    events = stack.cli("events", "--service", "sec", "--json", check=True).stdout
    assert "ReplicaReady" in events and "<redacted>" in events
    conn = await asyncpg.connect(stack_db)
    try:
        payloads = [row[0] for row in await conn.fetch("SELECT payload::text FROM stratus_events")]
        logs = {p: p.read_text(errors="replace") for p in (stack.home / "logs").rglob("*") if p.is_file()}
        assert logs, "no component log written"
        for value in (HEADER_SECRET, TOKEN_SECRET):
            assert value not in events + r.stdout + r.stderr, value
            assert not any(value in p for p in payloads), value
            assert not [path.name for path, text in logs.items() if value in text], value

        down = stack.cli("down", "sec", "--purge", "-y")
        assert down.returncode == 0, down.stdout + down.stderr
        assert await conn.fetchval("SELECT count(*) FROM stratus_secret_keys WHERE service = 'sec'") == 0
        assert await conn.fetchval("SELECT count(*) FROM stratus_secrets WHERE service = 'sec'") == 0
    finally:
        await conn.close()
    # Gone (404) or terminated: nothing of it left running.
    for _ in range(240):
        got = stack.api("GET", "/v1/services/sec", retry_for=10)
        if got.status_code == 404 or all(x["status"] == "TERMINATED" for x in got.json()["replicas"]):
            break
        await asyncio.sleep(0.25)
    else:
        raise AssertionError(f"the purged service's replica is still there: {got.text}")
