"""Authentication, authorization and input guards of the API, against a real Postgres and uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from libs.auth import TokenFileError, read_token_file, write_token_file
from libs.runtime.settings import Settings
from services.api.app import create_app
from services.api.cli import app as cli_app
from services.api.deps import ApiDeps

from .conftest import SERVICE_YAML, Api, Live
from .fleet_events import launch_replica

MUTATING = {"post", "put", "patch", "delete"}
# Routes that answer without an API token, by design.
OPEN_ROUTES = {("get", "/healthz"), ("post", "/v1/bootstrap")}


def operations(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m, p) for p, item in doc["paths"].items() for m in item if m in MUTATING | {"get"}]


def concrete(path: str) -> str:
    return (
        path.replace("{name}", "svc")
        .replace("{replica_id}", "1")
        .replace("{token_id}", "1")
        .replace("{component}", "scheduler")
    )


async def create(api: Api, name: str = "svc") -> None:
    r = await api.http.post("/v1/services", json={"name": name, "yaml": SERVICE_YAML})
    assert r.status_code == 201, r.text


async def test_without_a_token_every_route_answers_401_and_nothing_is_appended(api: Api) -> None:
    await create(api)
    await launch_replica(api.store, "svc", 1)
    before = await api.store.last_position()
    doc = (await api.http.get("/openapi.json")).json()
    checked = 0
    for method, path in operations(doc):
        if (method, path) in OPEN_ROUTES:
            continue
        body = {"name": "x", "yaml": SERVICE_YAML, "role": "admin"} if method in {"post", "put"} else None
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YWRtaW4="}):
            r = await api.anon.request(method, concrete(path), json=body, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"] == "unauthorized"
        checked += 1
    assert checked >= 12
    assert await api.store.last_position() == before
    assert (await api.anon.get("/healthz")).status_code == 200


async def test_a_viewer_reads_but_cannot_mutate(api: Api) -> None:
    await create(api)
    await launch_replica(api.store, "svc", 1)
    r = await api.http.post("/v1/auth/tokens", json={"name": "ci", "role": "viewer"})
    assert r.status_code == 201, r.text
    viewer = {"Authorization": f"Bearer {r.json()['token']}"}
    before = await api.store.last_position()
    assert (await api.anon.get("/v1/services", headers=viewer)).status_code == 200
    assert (await api.anon.get("/v1/auth/whoami", headers=viewer)).json()["role"] == "viewer"
    doc = (await api.http.get("/openapi.json")).json()
    for method, path in operations(doc):
        if method == "get" or (method, path) in OPEN_ROUTES:
            continue
        body = {"name": "x", "yaml": SERVICE_YAML, "role": "admin"}
        r = await api.anon.request(method, concrete(path), json=body, headers=viewer)
        assert r.status_code == 403, (method, path, r.text)
        assert "role viewer" in r.json()["message"]
    # Listing tokens is an admin's business too.
    assert (await api.anon.get("/v1/auth/tokens", headers=viewer)).status_code == 403
    assert await api.store.last_position() == before


async def test_a_text_plain_cross_origin_post_is_refused(api: Api) -> None:
    before = await api.store.last_position()
    browser = {"Content-Type": "text/plain", "Origin": "https://evil.example"}
    for headers in (browser, {**browser, **api.headers()}):
        r = await api.anon.post("/v1/services", content=SERVICE_YAML, headers=headers)
        assert r.status_code == 415, r.text
        assert "application/json or application/yaml" in r.json()["message"]
        assert not any(h.startswith("access-control-") for h in r.headers)
    form = {"Content-Type": "application/x-www-form-urlencoded", **api.headers()}
    assert (await api.anon.post("/v1/services", content="yaml=x", headers=form)).status_code == 415
    preflight = await api.anon.options(
        "/v1/services", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert not any(h.startswith("access-control-") for h in preflight.headers)
    assert await api.store.last_position() == before


async def test_cors_only_for_configured_origins(api: Api) -> None:
    settings = Settings(home=api.settings.home, api_cors_origins="https://ui.example")
    deps = ApiDeps(store=api.store, projection=api.projection, settings=settings)
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://stratus-api") as http:
        ask = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
        ok = await http.options("/v1/services", headers={"Origin": "https://ui.example", **ask})
        assert ok.headers["access-control-allow-origin"] == "https://ui.example"
        other = await http.options("/v1/services", headers={"Origin": "https://evil.example", **ask})
        assert "access-control-allow-origin" not in other.headers


async def test_mutations_record_the_principal_and_never_the_token(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await create(api)
    r = await api.http.post(
        "/v1/services/svc/versions", json={"yaml": SERVICE_YAML.replace("replicas: 2", "replicas: 3")}
    )
    assert r.status_code == 202, r.text
    await launch_replica(api.store, "svc", 1)
    assert (await api.http.post("/v1/services/svc/replicas/1/preempt")).status_code == 202
    assert (await api.http.delete("/v1/services/svc/replicas/1")).status_code == 202
    assert (await api.http.delete("/v1/services/svc")).status_code == 202
    events = (await api.http.get("/v1/events", params={"service": "svc", "limit": 100})).json()["events"]
    by = {e["type"]: e["data"].get("principal") for e in events}
    intents = ("ServiceRequested", "ServiceUpdateRequested", "PreemptionRequested",
               "ReplicaTerminationRequested", "ServiceDownRequested")  # fmt: skip
    assert {t: by[t] for t in intents} == dict.fromkeys(intents, "local-admin#1")
    rows = await api.store.pool.fetch("SELECT to_jsonb(e)::text AS row FROM stratus_events e")
    assert rows and not any(api.token in r["row"] for r in rows)
    assert not any(api.token in r["row"] for r in await api.store.pool.fetch(
        "SELECT to_jsonb(t)::text AS row FROM stratus_api_tokens t"
    ))  # fmt: skip
    assert api.token not in caplog.text


async def test_token_lifecycle_through_the_cli(live: Live, tmp_path: Path) -> None:
    runner = CliRunner()

    async def cli(*args: str, token: str) -> Any:
        call = functools.partial(
            runner.invoke,
            cli_app,
            ["--api-url", live.url, *args],
            env={"STRATUS_API_TOKEN": token, "STRATUS_HOME": str(tmp_path)},  # no token file there
        )
        return await asyncio.to_thread(call)

    admin = live.api.token
    made = await cli("auth", "create", "--role", "viewer", "--name", "dashboards", token=admin)
    assert made.exit_code == 0, made.output
    viewer = made.stdout.splitlines()[1].strip()
    assert viewer.startswith("stratus_") and len(viewer) > 40
    listed = await cli("auth", "list", token=admin)
    assert listed.exit_code == 0 and "dashboards" in listed.stdout and viewer not in listed.stdout
    me = await cli("auth", "whoami", token=viewer)
    assert me.exit_code == 0 and "role viewer" in me.stdout
    denied = await cli("debug", "preempt", "svc", "1", token=viewer)
    assert denied.exit_code == 1 and "role viewer: it may only read" in denied.stderr
    token_id = next(line.split()[0] for line in listed.stdout.splitlines() if "dashboards" in line)
    assert (await cli("auth", "revoke", token_id, token=viewer)).exit_code == 1  # viewers cannot
    gone = await cli("auth", "revoke", token_id, token=admin)
    assert gone.exit_code == 0 and "Revoked token" in gone.stdout
    after = await cli("status", token=viewer)
    assert after.exit_code == 1 and "unknown or was revoked" in after.stderr
    last_admin = await cli("auth", "revoke", "1", token=admin)
    assert last_admin.exit_code == 1 and "last admin token" in last_admin.stderr
    anonymous = await cli("status", token="")
    assert anonymous.exit_code == 1 and "needs an API token" in anonymous.stderr


def test_the_token_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "admin.token"
    write_token_file(path, "stratus_abc")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token_file(path) == "stratus_abc"
    path.chmod(0o644)
    with pytest.raises(TokenFileError, match="chmod 600"):
        read_token_file(path)


def test_openapi_declares_the_bearer_scheme(api: Api) -> None:
    doc = create_app(api.deps).openapi()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearer"]
        ["description"],
    }  # fmt: skip
    for method, path in operations(doc):
        secured = doc["paths"][path][method].get("security")
        assert (secured is None) == ((method, path) in OPEN_ROUTES), (method, path)


# --------------------------------------------------------------------------- body size


async def _raw(url: str, head: bytes, body_chunks: int = 0) -> tuple[bytes, float]:
    """Send ``head``, then up to ``body_chunks`` chunks of 64 KiB (chunked encoding) while
    reading: the first response bytes, and how long after the start they came."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    answer = asyncio.create_task(reader.read(4096))
    try:
        writer.write(head)
        chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
        for _ in range(body_chunks):
            if answer.done():
                break
            writer.write(chunk)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        got = await asyncio.wait_for(answer, 5)
        return got, time.monotonic() - started
    finally:
        answer.cancel()
        writer.close()


async def test_a_50_mb_body_is_refused_within_a_second(live: Live) -> None:
    auth = f"Authorization: Bearer {live.api.token}\r\n".encode()
    declared = (
        b"POST /v1/services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
        + b"Content-Length: 52428800\r\n\r\n"
    )  # fmt: skip
    answer, took = await _raw(live.url, declared)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"at most 1048576" in answer and took < 1.0
    # No Content-Length: the streamed bytes are counted; 50 MB offered, refused after 1 MiB.
    streamed = (
        b"POST /v1/services/x/versions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
        + b"Transfer-Encoding: chunked\r\n\r\n"
    )  # fmt: skip
    answer, took = await _raw(live.url, streamed, body_chunks=800)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert took < 1.0
    assert await live.api.store.last_position() == 0
