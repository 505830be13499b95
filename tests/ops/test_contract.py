"""The public event contract: the checked-in AsyncAPI document is the generated one and lists
every event type; the API serves it; the example integration (nats-py only) follows replicas
through the real relay and a real NATS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator

import nats.errors
import yaml

from libs.events.asyncapi import DOC_PATH, document, render
from libs.events.bus import connect
from libs.events.relay import Relay, RelayOptions
from libs.events.types import (
    ALL_EVENT_TYPES,
    Placement,
    Preempted,
    QpsSampled,
    ReplicaReady,
    ReplicaScheduled,
    replica_stream,
    service_stream,
)
from libs.runtime.host import bus_config
from tests.api.conftest import Api
from tests.e2e.conftest import REPO

WATCHER = REPO / "examples" / "integration" / "replica_watcher.py"


def test_the_checked_in_document_is_the_generated_one() -> None:
    assert DOC_PATH.read_text() == render(), "run `python -m libs.events.asyncapi --write`"


def test_the_document_lists_every_event_type_with_its_schema() -> None:
    doc = yaml.safe_load(DOC_PATH.read_text())
    tags = {str(t.__struct_config__.tag) for t in ALL_EVENT_TYPES}
    assert set(doc["components"]["messages"]) == tags
    assert set(doc["channels"]) == tags
    for tag in tags:
        assert doc["channels"][tag]["address"] == "{prefix}.ev.{service}." + tag
        payload = doc["components"]["messages"][tag]["payload"]["$ref"].rsplit("/", 1)[1]
        schema = doc["components"]["schemas"][payload]
        assert schema["properties"]["type"] == {"enum": [tag]}
        assert "service" in schema["required"]
    ready = doc["components"]["schemas"]["ReplicaReady"]
    assert set(ready["properties"]) >= {"replica_id", "url", "version"}
    assert "Versioning rules" in doc["info"]["description"]
    assert "At least once" in doc["info"]["description"]


async def test_the_api_serves_it_as_json_and_yaml(api: Api) -> None:
    r = await api.http.get("/v1/asyncapi")
    assert r.status_code == 200 and r.json() == json.loads(json.dumps(document()))
    y = await api.http.get("/v1/asyncapi", params={"format": "yaml"})
    assert y.status_code == 200 and y.text == render()
    assert (await api.anon.get("/v1/asyncapi")).status_code == 401


@contextlib.asynccontextmanager
async def relaying(api: Api) -> AsyncIterator[None]:
    nc = await connect(api.settings.nats_url, name="relay")
    relay = Relay(api.store, nc, bus_config(api.settings), RelayOptions(name="contract", poll_interval=0.2))
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        with contextlib.suppress(nats.errors.Error):
            await nc.jetstream().delete_stream(bus_config(api.settings).stream)
        await nc.close()


async def test_the_example_integration_reacts_to_ready_and_preempted(api: Api) -> None:
    store = api.store
    spot = Placement(cloud="aws", region="us-east-1", zone="us-east-1a", use_spot=True)
    async with relaying(api):
        for rid in (1, 2):
            await store.append(replica_stream("chat", rid), [
                ReplicaScheduled(service="chat", replica_id=rid, placement=spot),
                ReplicaReady(service="chat", replica_id=rid, url=f"http://10.0.0.{rid}:8080"),
            ])  # fmt: skip
        await store.append(service_stream("chat"), [
            QpsSampled(service="chat", router_id="r", window_start=0, window_seconds=10, requests=3)
        ])  # fmt: skip
        await store.append(
            replica_stream("chat", 1), [Preempted(service="chat", replica_id=1, placement=spot)]
        )
        await store.append(replica_stream("other", 1), [ReplicaReady(service="other", replica_id=1)])
        env = {**os.environ, "NATS_URL": api.settings.nats_url}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(WATCHER), "--prefix", api.settings.bus_prefix, "--service", "chat",
            "--max-events", "3", "--durable", "watcher-test",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, err.decode()
    changes = [json.loads(line) for line in out.decode().splitlines()]
    assert changes == [
        {"change": "ready", "service": "chat", "replica_id": 1, "ready": [1]},
        {"change": "ready", "service": "chat", "replica_id": 2, "ready": [1, 2]},
        {"change": "preempted", "service": "chat", "replica_id": 1, "where": "aws/us-east-1a", "ready": [2]},
    ]
