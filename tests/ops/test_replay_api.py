"""GET /v1/replay over the in-process API: the state at a position or time, filters, and the
errors that name what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.api.conftest import SERVICE_YAML, Api
from tests.api.fleet_events import decide_scale, launch_replica, terminate_service


async def test_replay_by_position_and_by_time(api: Api) -> None:
    r = await api.http.post("/v1/services", json={"name": "web", "yaml": SERVICE_YAML})
    assert r.status_code == 201, r.text
    requested = r.json()["position"]
    ready = await launch_replica(api.store, "web", 1)
    decided = await decide_scale(api.store, "web", 2, "qps 3.0 over 1 replica: up to 2")
    row = await api.store.pool.fetchrow("SELECT occurred_at FROM stratus_events WHERE position = $1", decided)
    at_decision = row[0]
    gone = await terminate_service(api.store, "web")

    body = (await api.http.get("/v1/replay", params={"position": requested})).json()
    (svc,) = body["services"]
    assert svc["name"] == "web" and svc["replicas"] == [] and body["position"] == requested
    body = (await api.http.get("/v1/replay", params={"position": ready})).json()
    (rep,) = body["services"][0]["replicas"]
    assert rep["status"] == "READY" and rep["zone"] == "us-east4-a" and rep["use_spot"]
    body = (await api.http.get("/v1/replay", params={"at": at_decision.isoformat()})).json()
    auto = body["services"][0]["autoscaling"]
    assert auto["last_decision_reason"] == "qps 3.0 over 1 replica: up to 2"
    assert body["position"] >= decided and body["head"] == gone
    after = (await api.http.get("/v1/replay", params={"position": gone})).json()
    assert after["services"] == []  # terminated: listed only with all=true
    kept = (await api.http.get("/v1/replay", params={"position": gone, "all": "true"})).json()
    assert kept["services"][0]["status"] == "TERMINATED"
    one = await api.http.get("/v1/replay", params={"position": gone, "service": "web"})
    assert one.json()["services"][0]["name"] == "web"


async def test_replay_errors_name_what_is_wrong(api: Api) -> None:
    http = api.http
    r = await http.get("/v1/replay")
    assert r.status_code == 422 and "exactly one of `at`" in r.json()["message"]
    r = await http.get("/v1/replay", params={"position": 1, "at": datetime.now(UTC).isoformat()})
    assert r.status_code == 422
    r = await http.get("/v1/replay", params={"at": "2024-05-01T12:00:00"})
    assert r.status_code == 422 and "time zone" in r.json()["message"]
    r = await http.get("/v1/replay", params={"position": 0, "service": "ghost"})
    assert r.status_code == 404 and "ghost" in r.json()["message"]
    r = await http.get("/v1/services/ghost/replicas/1/why")
    assert r.status_code == 404 and "ghost" in r.json()["message"]
    assert (await api.anon.get("/v1/replay", params={"position": 0})).status_code == 401
