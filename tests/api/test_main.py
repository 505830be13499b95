"""``python -m services.api.main``: serves on STRATUS_API_URL's port, ends cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from libs.servers.ports import free_port
from services.api.main import bind_address

from .conftest import SERVICE_YAML


def test_bind_address() -> None:
    assert bind_address("http://127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert bind_address("http://0.0.0.0:9000/") == ("0.0.0.0", 9000)
    assert bind_address("http://localhost") == ("localhost", 8765)


async def test_serves_then_stops_on_sigterm(fresh_db_url: str, nats_url: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ, "DATABASE_URL": fresh_db_url, "NATS_URL": nats_url, "STRATUS_API_URL": url,
        "STRATUS_HOME": str(tmp_path),
    }  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.api.main", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            for _ in range(300):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the API did not start")
            # The first start wrote the first admin token, readable by this user only.
            token_path = tmp_path / "auth" / "admin.token"
            assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
            http.headers["Authorization"] = f"Bearer {token_path.read_text().strip()}"
            r = await http.post(
                "/v1/services",
                json={"name": "svc", "yaml": SERVICE_YAML},
            )
            assert r.status_code == 201, r.text
            assert (await http.get("/v1/services/svc")).json()["status"] == "CONTROLLER_INIT"
            # An open follower must not hold the shutdown up.
            async with http.stream("GET", "/v1/events/stream", timeout=httpx.Timeout(5, read=15)) as stream:
                proc.send_signal(signal.SIGTERM)
                async for _ in stream.aiter_lines():
                    pass
        code = await asyncio.wait_for(proc.wait(), 15)
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
        assert code == 0, log
        assert "Finished server process" in log
        assert (tmp_path / "secrets.key").exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
