"""Through the API and a real prober: header and env secret values never reach the log, the
probe still sends the header, and ``down --purge`` leaves nothing that decrypts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from libs.events.types import (
    ReplicaLaunched,
    ReplicaReady,
    ReplicaScheduled,
    ServiceRequested,
    replica_stream,
)
from libs.runtime.host import ServiceHost
from libs.runtime.settings import Settings
from libs.secrets import load_or_create_keys, load_probe_headers, load_secrets
from services.prober.main import build
from tests.api.conftest import Api

HEADER_VALUE = "Bearer probe-hdr-7731"
TOKEN_VALUE = "hf_e2e_token_5520"
DB_URL_VALUE = "postgresql://app:url-pass-3308@db/app"


def spec_yaml(port: int) -> str:
    return f"""\
service:
  readiness_probe:
    path: /health
    headers:
      Authorization: {HEADER_VALUE}
  replicas: 1
resources:
  ports: {port}
envs:
  HF_TOKEN: {TOKEN_VALUE}
  DATABASE_URL: {DB_URL_VALUE}
  TOKEN_DELAY: "0.1"
run: python -m http.server {port}
"""


@dataclass
class Recorder:
    """A real HTTP server on loopback that records every request's headers."""

    port: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    seen: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        self.requests.append(
            {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}
        )
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
        self.seen.set()


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    server = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    rec.port = server.sockets[0].getsockname()[1]
    async with server:
        yield rec


async def _payloads(api: Api) -> list[str]:
    return [row[0] for row in await api.store.pool.fetch("SELECT payload::text FROM stratus_events")]


async def test_the_prober_sends_the_stored_header_and_no_value_is_logged(
    api: Api, recorder: Recorder, nats_url: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    r = await api.http.post("/v1/services", json={"name": "sec", "yaml": spec_yaml(recorder.port)})
    assert r.status_code == 201, r.text
    assert r.json()["secret_envs"] == ["DATABASE_URL", "HF_TOKEN"]
    url = f"http://127.0.0.1:{recorder.port}"
    await api.store.append(
        replica_stream("sec", 1),
        [
            ReplicaScheduled(service="sec", replica_id=1, version=1),
            ReplicaLaunched(service="sec", replica_id=1, instance_id="i-1", url=url),
        ],
    )
    settings = Settings(
        home=api.settings.home, database_url=api.store.dsn, nats_url=nats_url, bus_prefix=f"t{unique}",
        probe_interval=0.05,
    )  # fmt: skip
    host = ServiceHost("prober", settings)
    build(host)
    caplog.set_level(logging.DEBUG)
    running = asyncio.create_task(host.run())
    try:
        await asyncio.wait_for(recorder.seen.wait(), 20)
        for _ in range(400):  # the prober records ReplicaReady after the first 200
            events = [rec.event for rec in await api.store.read_stream(replica_stream("sec", 1))]
            if any(isinstance(e, ReplicaReady) for e in events):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the prober never recorded ReplicaReady")
    finally:
        host.stop.set()
        await asyncio.wait_for(running, 10)
    assert recorder.requests[0]["authorization"] == HEADER_VALUE

    (created,) = [rec.event for rec in await api.store.read_stream("service-sec")]
    assert isinstance(created, ServiceRequested)
    assert created.spec["service"]["headers"] == {"Authorization": "<redacted>"}
    assert created.spec["envs"] == {"TOKEN_DELAY": "0.1"}
    payloads = await _payloads(api)
    events_json = (await api.http.get("/v1/events")).text
    service_json = (await api.http.get("/v1/services/sec")).text
    for value in (HEADER_VALUE, "probe-hdr-7731", TOKEN_VALUE, "url-pass-3308"):
        assert not any(value in p for p in payloads), value
        assert value not in events_json and value not in service_json and value not in r.text
        assert value not in caplog.text, value


async def test_purge_leaves_no_key_that_decrypts_the_values(api: Api) -> None:
    r = await api.http.post("/v1/services", json={"name": "sec", "yaml": spec_yaml(8080)})
    assert r.status_code == 201, r.text
    home = api.settings.home
    assert (await load_secrets(api.store.pool, "sec", 1, home))["HF_TOKEN"] == TOKEN_VALUE
    assert await load_probe_headers(api.store.pool, "sec", 1, home) == {"Authorization": HEADER_VALUE}
    stolen = [
        bytes(row[0]) for row in await api.store.pool.fetch("SELECT value_encrypted FROM stratus_secrets")
    ]
    assert len(stolen) == 3

    r = await api.http.delete("/v1/services/sec")  # a plain down keeps them (nothing purged)
    assert r.status_code == 202, r.text
    assert await api.store.pool.fetchval("SELECT count(*) FROM stratus_secret_keys") == 1
    r = await api.http.delete("/v1/services/sec", params={"purge": "true"})
    assert r.status_code == 202, r.text

    assert await api.store.pool.fetchval("SELECT count(*) FROM stratus_secret_keys") == 0
    assert await api.store.pool.fetchval("SELECT count(*) FROM stratus_secrets") == 0
    assert await load_secrets(api.store.pool, "sec", 1, home) == {}
    every_key = MultiFernet([Fernet(k) for k in load_or_create_keys(home)])
    for token in stolen:
        with pytest.raises(InvalidToken):
            every_key.decrypt(token)
