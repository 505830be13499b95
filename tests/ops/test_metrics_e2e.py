"""/metrics on the whole stack: every component says where it serves them
(`stratus local status --json`), and the router counts one service's requests."""

from __future__ import annotations

import json
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Stack
from tests.ops.one_service import up_one


def value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_every_component_serves_metrics_and_the_router_counts_requests(stack: Stack) -> None:
    svc = up_one(stack, "metered")
    with httpx.Client(timeout=10) as http:
        for _ in range(5):
            assert http.get(f"http://{svc['endpoint']}/").status_code == 200

    status = json.loads(stack.cli("local", "status", "--json", check=True).stdout)
    comps = status["components"]
    for name in ("api", "relay", "scheduler", "provisioner", "prober", "autoscaler", "router"):
        assert comps[name]["metrics"], (name, comps[name], status["metrics"])
    with httpx.Client(timeout=10) as http:
        router = http.get(comps["router"]["metrics"]).text
        scheduler = http.get(comps["scheduler"]["metrics"]).text
        provisioner = http.get(comps["provisioner"]["metrics"]).text
    assert value(router, "stratus_router_requests_total", service="metered", status="200") == 5
    assert value(scheduler, "stratus_reconciles_total", outcome="ok") >= 1
    assert value(scheduler, "stratus_handled_messages_total", event_type="ServiceRequested") >= 1
    assert value(scheduler, "stratus_projection_position", projection="fleet") > 0
    assert value(provisioner, "stratus_launches_total", cloud="local", outcome="launched") >= 1
    assert value(provisioner, "stratus_instance_hours", cloud="local", capacity="on_demand") > 0
    # The relay: what it published, its lease, and (sampled every 5 s) its offset and lag.
    deadline = time.monotonic() + 30
    while True:
        with httpx.Client(timeout=10) as http:
            relay = http.get(comps["relay"]["metrics"]).text
        if value(relay, "stratus_relay_offset") > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert value(relay, "stratus_relay_published_total") > 0 and value(relay, "stratus_relay_leader") == 1
    assert value(relay, "stratus_relay_offset") > 0 and value(relay, "stratus_relay_lag_events") >= 0
    assert stack.cli("down", "metered", "-y").returncode == 0
