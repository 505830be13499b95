"""Services and replicas over HTTP: create (YAML, JSON, raw YAML), dry run, conflicts, errors,
list/get, down, replica termination and preemption, update."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from libs.events.types import (
    PreemptionRequested,
    ReplicaTerminationRequested,
    ServiceDownRequested,
    ServiceRequested,
    ServiceUpdateRequested,
    replica_stream,
    service_stream,
)
from libs.fleet import FleetState
from services.api.app import create_app
from services.api.deps import ApiDeps

from .conftest import SERVICE_YAML, Api
from .fleet_events import (
    assign_endpoint,
    decide_scale,
    launch_replica,
    schedule_replica,
    terminate_service,
)


async def create(api: Api, name: str = "hello", **body: Any) -> dict[str, Any]:
    body.setdefault("yaml", SERVICE_YAML)
    r = await api.http.post("/v1/services", json={"name": name, **body})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def synced(api: Api) -> FleetState:
    return await api.projection.wait_for(await api.store.last_position(), 5.0)


async def test_openapi_is_served(api: Api) -> None:
    r = await api.http.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    paths = doc["paths"]
    for path in (
        "/v1/services",
        "/v1/services/{name}",
        "/v1/services/{name}/versions",
        "/v1/services/{name}/replicas/{replica_id}",
        "/v1/services/{name}/replicas/{replica_id}/logs",
        "/v1/components/{component}/logs",
        "/v1/events",
        "/v1/events/stream",
    ):
        assert path in paths, path
    create_body = paths["/v1/services"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/yaml"} <= set(create_body)
    assert (await api.http.get("/healthz")).json()["status"] == "ok"


async def test_create_from_yaml_records_service_requested(api: Api) -> None:
    plan = await create(api)
    assert plan["name"] == "hello" and plan["version"] == 1 and plan["dry_run"] is False
    assert plan["position"] > 0
    assert any("2 replicas" in line for line in plan["summary"])
    recorded = await api.store.read_stream(service_stream("hello"))
    assert [r.event_type for r in recorded] == ["ServiceRequested"]
    event = recorded[0].event
    assert isinstance(event, ServiceRequested)
    assert event.spec["service"]["min_replicas"] == 2 and event.spec["name"] == "hello"
    # Read-your-writes: the service is visible right away.
    r = await api.http.get("/v1/services/hello")
    assert r.status_code == 200
    svc = r.json()
    assert svc["status"] == "CONTROLLER_INIT" and svc["version"] == 1 and svc["replicas"] == []
    assert svc["autoscaling"]["policy"] == "fixed" and svc["autoscaling"]["target_replicas"] == 2


async def test_create_from_json_spec_and_raw_yaml(api: Api) -> None:
    spec = {
        "service": {"readiness_probe": "/health", "replicas": 1},
        "resources": {"ports": 8000},
        "envs": {"MODEL": "tiny"},
        "run": "python -m http.server 8000",
    }
    r = await api.http.post("/v1/services", json={"name": "from-json", "spec": spec})
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["service"]["readiness_path"] == "/health"
    assert r.json()["spec"]["envs"] == {"MODEL": "tiny"}

    r = await api.http.post(
        "/v1/services?name=from-raw", content=SERVICE_YAML, headers={"Content-Type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    listed = (await api.http.get("/v1/services")).json()
    assert [s["name"] for s in listed["services"]] == ["from-json", "from-raw"]


async def test_name_defaults_to_the_yaml_name_then_a_generated_one(api: Api) -> None:
    r = await api.http.post("/v1/services", json={"yaml": "name: named-in-yaml\n" + SERVICE_YAML})
    assert r.status_code == 201 and r.json()["name"] == "named-in-yaml"
    r = await api.http.post("/v1/services", json={"yaml": SERVICE_YAML})
    assert r.status_code == 201 and r.json()["name"].startswith("stratus-service-")


async def test_dry_run_records_nothing(api: Api) -> None:
    r = await api.http.post("/v1/services", json={"name": "dry", "yaml": SERVICE_YAML, "dry_run": True})
    assert r.status_code == 200, r.text
    assert r.json()["dry_run"] is True and r.json()["position"] is None
    assert await api.store.last_position() == 0
    assert (await api.http.get("/v1/services/dry")).status_code == 404


async def test_duplicate_name_is_409(api: Api) -> None:
    await create(api)
    r = await api.http.post("/v1/services", json={"name": "hello", "yaml": SERVICE_YAML})
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "conflict"
    assert "already exists" in body["message"] and "-n NAME" in body["message"]
    # A dry run says so too, before anyone confirms anything.
    r = await api.http.post("/v1/services", json={"name": "hello", "yaml": SERVICE_YAML, "dry_run": True})
    assert r.status_code == 409


async def test_a_terminated_name_can_be_used_again(api: Api) -> None:
    await create(api)
    await terminate_service(api.store, "hello")
    await synced(api)
    assert (await api.http.get("/v1/services")).json()["services"] == []
    await create(api)
    assert (await api.http.get("/v1/services/hello")).json()["status"] == "CONTROLLER_INIT"


async def test_invalid_spec_is_422_naming_each_field(api: Api) -> None:
    bad = "service:\n  readiness_probe: /\n  replicas: two\nresources:\n  ports: 8080\nrun: x\n"
    r = await api.http.post("/v1/services", json={"name": "bad", "yaml": bad})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_spec"
    assert body["issues"] == [
        {"field": "service.replicas", "message": "must be an integer, got string 'two'", "line": 3}
    ]
    assert "service.replicas" in body["message"]

    r = await api.http.post("/v1/services", json={"name": "bad", "yaml": "service: [\n"})
    assert r.status_code == 422 and "invalid YAML" in r.json()["message"]

    r = await api.http.post(
        "/v1/services",
        json={"name": "bad", "spec": {"service": {"replicas": 1, "readiness_probe": "health"}, "run": "x"}},
    )
    assert r.status_code == 422
    assert {i["field"] for i in r.json()["issues"]} >= {"service.readiness_probe", "resources.ports"}
    assert await api.store.last_position() == 0


async def test_invalid_requests_are_422_with_a_message(api: Api) -> None:
    r = await api.http.post("/v1/services", json={"name": "x", "yaml": SERVICE_YAML, "spec": {}})
    assert r.status_code == 422 and "exactly one of 'yaml'" in r.json()["message"]
    r = await api.http.post("/v1/services", json={"name": "x", "yml": SERVICE_YAML})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request" and r.json()["issues"][0]["field"] == "yml"
    r = await api.http.post("/v1/services", json={"name": "no spaces", "yaml": SERVICE_YAML})
    assert r.status_code == 422 and r.json()["error"] == "invalid_name"
    r = await api.http.post("/v1/services", content=b"x", headers={"Content-Type": "image/png"})
    assert r.status_code == 415
    r = await api.http.post(
        "/v1/services", json={"name": "x", "yaml": SERVICE_YAML, "env": {"BAD NAME": "1"}}
    )
    assert r.status_code == 422 and "BAD NAME" in r.json()["message"]
    r = await api.http.get("/v1/nothing-here")
    assert r.status_code == 404 and "/docs" in r.json()["message"]


async def test_list_and_get_show_replicas_endpoint_and_scaling(api: Api) -> None:
    await create(api)
    await launch_replica(api.store, "hello", 1, ip="10.0.0.1")
    await launch_replica(api.store, "hello", 2, ready=False, ip="10.0.0.2")
    await assign_endpoint(api.store, "hello", "http://127.0.0.1:30001")
    await decide_scale(api.store, "hello", 2, "qps 3.0 / target 2.0 -> 2 replicas")
    await synced(api)
    svc = (await api.http.get("/v1/services/hello")).json()
    assert svc["status"] == "READY"
    assert svc["endpoint"] == "http://127.0.0.1:30001"
    assert (svc["replicas_ready"], svc["replicas_total"]) == (1, 2)
    assert svc["uptime_seconds"] is not None and svc["versions"] == [1]
    assert svc["autoscaling"]["last_decision_reason"] == "qps 3.0 / target 2.0 -> 2 replicas"
    r1, r2 = svc["replicas"]
    assert r1["status"] == "READY" and r2["status"] == "STARTING"
    assert r1["ip"] == "10.0.0.1" and r1["region"] == "us-east4"
    assert r1["resources"] == "1x GCP([Spot]{'L4': 1})"
    assert r1["launched_at"] is not None
    listed = (await api.http.get("/v1/services", params={"name": ["hello", "nope"]})).json()
    assert [s["name"] for s in listed["services"]] == ["hello"]
    one = (await api.http.get("/v1/services/hello/replicas/2")).json()
    assert one["status"] == "STARTING"


async def test_unknown_service_is_404_with_a_clear_message(api: Api) -> None:
    await create(api)
    for method, path in (
        ("GET", "/v1/services/helo"),
        ("DELETE", "/v1/services/helo"),
        ("DELETE", "/v1/services/helo/replicas/1"),
        ("POST", "/v1/services/helo/replicas/1/preempt"),
        ("GET", "/v1/services/helo/replicas/1/logs"),
    ):
        r = await api.http.request(method, path)
        assert r.status_code == 404, (method, path)
        assert r.json()["message"] == "service 'helo' not found; did you mean 'hello'?"
    r = await api.http.post("/v1/services/nope/versions", json={"yaml": SERVICE_YAML})
    assert r.status_code == 404 and "`stratus status` lists the services" in r.json()["message"]


async def test_delete_requests_down_once_and_purge_upgrades(api: Api) -> None:
    await create(api)
    r = await api.http.delete("/v1/services/hello")
    assert r.status_code == 202 and "shutting down" in r.json()["message"]
    assert (await api.http.get("/v1/services/hello")).json()["status"] == "SHUTTING_DOWN"
    r = await api.http.delete("/v1/services/hello")
    assert r.status_code == 202 and "already shutting down" in r.json()["message"]
    r = await api.http.delete("/v1/services/hello", params={"purge": "true"})
    assert r.status_code == 202
    downs = [r.event for r in await api.store.read_stream(service_stream("hello"))][1:]
    by = "local-admin#1"
    assert downs == [
        ServiceDownRequested(service="hello", principal=by),
        ServiceDownRequested(service="hello", purge=True, principal=by),
    ]
    # Updating a service that is going away is refused.
    r = await api.http.post("/v1/services/hello/versions", json={"yaml": SERVICE_YAML})
    assert r.status_code == 409
    await terminate_service(api.store, "hello")
    await synced(api)
    r = await api.http.delete("/v1/services/hello")
    assert r.status_code == 404 and "already terminated" in r.json()["message"]


async def test_terminate_one_replica(api: Api) -> None:
    await create(api)
    await launch_replica(api.store, "hello", 1)
    await launch_replica(api.store, "hello", 2)
    await synced(api)
    r = await api.http.delete("/v1/services/hello/replicas/9")
    assert r.status_code == 404
    assert r.json()["message"].startswith("service 'hello' has no replica 9 (its replicas: 1, 2)")
    r = await api.http.delete("/v1/services/hello/replicas/2")
    assert r.status_code == 202 and r.json()["replica_id"] == 2
    last = (await api.store.read_stream(replica_stream("hello", 2)))[-1].event
    assert isinstance(last, ReplicaTerminationRequested) and last.replica_id == 2 and not last.purge
    replicas = (await api.http.get("/v1/services/hello")).json()["replicas"]
    assert [r["status"] for r in replicas] == ["READY", "SHUTTING_DOWN"]
    r = await api.http.delete("/v1/services/hello/replicas/2")
    assert r.status_code == 409 and "already SHUTTING_DOWN" in r.json()["message"]
    r = await api.http.delete("/v1/services/hello/replicas/0")
    assert r.status_code == 422


async def test_preempt_a_launched_replica_only(api: Api) -> None:
    await create(api)
    await launch_replica(api.store, "hello", 1)
    await schedule_replica(api.store, "hello", 2)
    await synced(api)
    r = await api.http.post("/v1/services/hello/replicas/1/preempt")
    assert r.status_code == 202
    last = (await api.store.read_stream(replica_stream("hello", 1)))[-1].event
    assert last == PreemptionRequested(service="hello", replica_id=1, principal="local-admin#1")
    r = await api.http.post("/v1/services/hello/replicas/2/preempt")
    assert r.status_code == 409 and "is PENDING" in r.json()["message"]


async def test_update_records_a_new_version(api: Api) -> None:
    await create(api)
    new_yaml = SERVICE_YAML.replace("replicas: 2", "replicas: 3")
    r = await api.http.post("/v1/services/hello/versions", json={"yaml": new_yaml, "dry_run": True})
    assert r.status_code == 200 and r.json()["version"] == 2
    assert len(await api.store.read_stream(service_stream("hello"))) == 1
    r = await api.http.post("/v1/services/hello/versions", json={"yaml": new_yaml, "mode": "blue_green"})
    assert r.status_code == 202, r.text
    last = (await api.store.read_stream(service_stream("hello")))[-1].event
    assert isinstance(last, ServiceUpdateRequested)
    assert (last.version, last.mode, last.spec["service"]["min_replicas"]) == (2, "blue_green", 3)
    svc = (await api.http.get("/v1/services/hello")).json()
    assert svc["version"] == 2 and svc["update_mode"] == "blue_green"
    r = await api.http.post("/v1/services/hello/versions", json={"yaml": new_yaml, "mode": "canary"})
    assert r.status_code == 422 and r.json()["issues"][0]["field"] == "mode"


async def test_errors_never_echo_the_request_input(api: Api) -> None:
    r = await api.http.post(
        "/v1/services", json={"name": "x", "yaml": SERVICE_YAML, "env": {"HF_TOKEN": 12345}}
    )
    assert r.status_code == 422
    assert "12345" not in json.dumps(r.json())


class _BrokenProjection:
    position = 0

    @property
    def state(self) -> FleetState:
        raise RuntimeError("projection exploded")

    async def wait_for(self, position: int, timeout: float) -> FleetState:  # noqa: ASYNC109
        raise RuntimeError("projection exploded")


async def test_unexpected_errors_are_json_too(api: Api) -> None:
    deps = ApiDeps(store=api.store, projection=_BrokenProjection(), settings=api.settings)
    transport = httpx.ASGITransport(app=create_app(deps), raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://stratus-api", headers=api.headers()
    ) as http:
        r = await http.get("/v1/services")
    assert r.status_code == 500
    assert r.json()["error"] == "internal" and "stratus logs --component api" in r.json()["message"]
    assert "exploded" not in r.text


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/services", b"{", "invalid request: body: not valid JSON: EOF while parsing"),
        ("/v1/services/x/versions", b"{", "invalid request: body: not valid JSON: Expecting property name"),
        ("/v1/services/x/versions", b'{"yaml": }', "at character 9"),
        ("/v1/services", b"[1]", "invalid request: body: must be a JSON object"),
        ("/v1/services/x/versions", b"[1]", "invalid request: body: must be a JSON object"),
    ],
)
async def test_malformed_json_gets_one_message_style(api: Api, path: str, body: bytes, message: str) -> None:
    r = await api.http.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    out = r.json()
    assert message in out["message"], out
    assert [i["field"] for i in out["issues"]] == ["body"]


async def test_docs_need_no_cdn(api: Api) -> None:
    page = await api.http.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/docs/assets/") for a in assets), assets
    for asset in assets:
        r = await api.http.get(asset)
        assert r.status_code == 200 and len(r.content) > 500, asset
