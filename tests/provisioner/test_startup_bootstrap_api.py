"""The API's ``POST /v1/bootstrap`` and ``GET /v1/clouds`` over real HTTP (uvicorn on loopback):
the instance-side fetch program trades a token for the replica's secrets exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from libs.auth.store import create_token
from libs.auth.store import ensure_schema as ensure_auth_schema
from libs.bootstrap import issue
from libs.events.projection import LiveProjection
from libs.events.store import EventStore
from libs.events.types import CLOUDS_STREAM, CloudsChecked
from libs.runtime.settings import Settings
from libs.secrets import ensure_schema, store_secrets
from services.api.app import create_app
from services.api.deps import ApiDeps, fleet_projection

FETCH = Path(__file__).parents[2] / "services" / "provisioner" / "clouds" / "startup_fetch.py"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def api(store: EventStore, tmp_path: Path) -> AsyncIterator[tuple[str, ApiDeps]]:
    settings = Settings(home=tmp_path / "home", database_url=store.dsn)
    await ensure_schema(store.pool)
    await ensure_auth_schema(store.pool)
    projection = LiveProjection(fleet_projection(), store, poll_interval=0.05)
    await projection.start()
    deps = ApiDeps(store=store, projection=projection, settings=settings, secrets_schema_ready=True)
    config = uvicorn.Config(create_app(deps), host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(250):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", deps
    finally:
        deps.stopping.set()
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await projection.stop()


async def test_the_fetch_program_gets_the_secrets_once(api: tuple[str, ApiDeps], tmp_path: Path) -> None:
    url, deps = api
    pool, home = deps.store.pool, deps.settings.home
    async with pool.acquire() as conn, conn.transaction():
        await store_secrets(conn, "svc", 2, {"HF_TOKEN": "hf-xyz 'q'", "DB_PASSWORD": "pw"}, home)
    issued = await issue(pool, "svc", 5, 2, home)
    root = tmp_path / "instance"
    root.mkdir()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(FETCH), f"{url}/v1/bootstrap", str(root)],
        env={"STRATUS_BOOTSTRAP_TOKEN": issued.token},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "hf-xyz" not in done.stdout + done.stderr
    sourced = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", f'. {root}/secrets.env && printf "%s|%s" "$HF_TOKEN" "$DB_PASSWORD"'],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert sourced.stdout == "hf-xyz 'q'|pw"
    assert (root / "log_token").read_text() == issued.log_token

    async with httpx.AsyncClient(base_url=url) as http:
        again = await http.post("/v1/bootstrap", headers={"Authorization": f"Bearer {issued.token}"})
        assert again.status_code == 410 and "used" in again.json()["message"]
        assert "hf-xyz" not in again.text
        unknown = await http.post("/v1/bootstrap", headers={"Authorization": "Bearer nope"})
        assert unknown.status_code == 401
        missing = await http.post("/v1/bootstrap")
        assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["message"]


async def viewer_token(deps: ApiDeps) -> str:
    _, token = await create_token(deps.store.pool, "tester", "viewer")
    return token


def stratus(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "STRATUS_API_URL": url,
        "STRATUS_API_TOKEN": token,
        "HOME": "/nonexistent",
    }
    return subprocess.run(
        [sys.executable, "-m", "services.api.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_clouds_route_shows_the_last_check(api: tuple[str, ApiDeps]) -> None:
    url, deps = api
    token = await viewer_token(deps)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        assert (await http.get("/v1/clouds", headers={"Authorization": ""})).status_code == 401
        before = (await http.get("/v1/clouds")).json()
        assert before["checked"] is False and before["enabled"] == ["local"]
        result = await deps.store.append(CLOUDS_STREAM, [CloudsChecked(
            service="", enabled=["aws"], allowed=["aws", "gcp"],
            disabled={"gcp": "no Google credentials. To fix: run gcloud auth application-default login",
                      "azure": "not in allowed_clouds ['aws', 'gcp']"},
        )])  # fmt: skip
        await deps.projection.wait_for(result.last_position, 10)
        body = (await http.get("/v1/clouds")).json()
    assert body["checked"] is True and body["enabled"] == ["local", "aws"]
    by_cloud = {c["cloud"]: c for c in body["clouds"]}
    assert by_cloud["aws"] == {"cloud": "aws", "enabled": True, "reason": ""}
    assert "gcloud auth" in by_cloud["gcp"]["reason"] and not by_cloud["gcp"]["enabled"]
    assert "allowed_clouds" in by_cloud["azure"]["reason"]

    # `stratus check`, through the real CLI.
    done = await asyncio.to_thread(stratus, url, token, "check")
    assert done.returncode == 0, done.stderr
    assert "AWS    enabled" in done.stdout and "GCP    disabled" in done.stdout
    assert "gcloud auth application-default login" in done.stdout
    assert "Enabled: local, aws." in done.stdout
    as_json = await asyncio.to_thread(stratus, url, token, "check", "--json")
    assert json.loads(as_json.stdout)["enabled"] == ["local", "aws"]
