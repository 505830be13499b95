"""Autoscaling end to end: a QPS surge scales a service out and back in; a min_replicas 0
service scales to zero and a held request wakes it up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import Stack
from .scaling import (
    Load,
    alive,
    event_time,
    fast_stack,
    mock_llm,
    of_type,
    posts,
    ready,
    running_instances,
    service_yaml,
    site,
    start_stream,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def astack(tmp_path_factory: pytest.TempPathFactory, nats_url: str, stack_db: str) -> Iterator[Stack]:
    with fast_stack(tmp_path_factory.mktemp("stratus-autoscale"), nats_url, stack_db) as s:
        yield s


def _timed(t0: float) -> float:
    return round(time.monotonic() - t0, 1)


def test_qps_surge_scales_out_and_back(astack: Stack, tmp_path: Path) -> None:
    stack = astack
    spec = service_yaml(
        tmp_path / "surge.yaml",
        site(tmp_path, "www", "surge v1"),
        policy={"min_replicas": 1, "max_replicas": 3, "target_qps_per_replica": 2,
                "upscale_delay_seconds": 2, "downscale_delay_seconds": 5},
    )  # fmt: skip
    stack.cli("up", str(spec), "-n", "surge", "-y", "--timeout", "120", check=True)
    svc = stack.wait("surge", lambda s: len(ready(s)) == 1, what="1 READY replica")
    url = f"http://{svc['endpoint']}/"
    assert len(alive(svc)) == 1

    # ~9 req/s against 2 per replica: 5 wanted, clipped to 3.
    t0 = time.monotonic()
    load = Load(url, rate=9, seconds=90).start()
    try:
        svc = stack.wait("surge", lambda s: len(ready(s)) == 3, timeout=75, what="3 READY replicas")
        scale_out = _timed(t0)
        text = stack.cli("status", "-v", "surge", check=True).stdout
    finally:
        load.stop()
    assert load.failures == [], load.failures[:5]
    assert len(load.ok) > 20
    assert svc["autoscaling"]["target_replicas"] == 3
    # `status -v` shows the policy, the counts and why.
    assert "autoscaling 1-3 replicas at 2 QPS per replica" in text, text
    assert "upscale delay 2s, downscale delay 5s" in text, text
    assert "current 3, target 3" in text, text
    assert "Last scale:" in text and "upscale delay 2s" in text, text

    # Load gone: back to min_replicas after the window empties and the downscale delay.
    t1 = time.monotonic()
    svc = stack.wait("surge", lambda s: len(alive(s)) == 1, timeout=60, what="back to 1 replica")
    scale_in = _timed(t1)
    svc = stack.wait(
        "surge",
        lambda s: all(r["status"] == "READY" for r in s["replicas"]),
        timeout=30,
        what="the scaled-down replicas gone",
    )
    text = stack.cli("status", "-v", "surge", check=True).stdout
    assert "current 1, target 1" in text, text
    assert "downscale delay 5s" in text, text

    decisions = of_type(stack.events("surge"), "ScaleDecided")
    targets = [d["data"]["target"] for d in decisions]
    assert 3 in targets and targets[-1] == 1, targets
    # The first scale-up: straight to 3, or through 2 when the load's QPS climbs over two windows
    # (a loaded machine); either way held for the upscale delay, and from 1.
    up = next(d["data"] for d in decisions if d["data"]["target"] >= 2)
    assert "held" in up["reason"] and ">= upscale delay 2s" in up["reason"], up
    assert up["inputs"]["raw_target"] >= up["target"] >= 2, up
    assert up["inputs"]["qps"] > 2 * (up["target"] - 1), up["inputs"]  # 2 QPS per replica
    # SkyServe's counter: a 2 s delay at 1 s decision ticks moves on tick 2 of the streak, 1 s in.
    assert up["inputs"]["held_seconds"] >= 1 and up["inputs"]["previous_target"] == 1
    assert up["inputs"]["max_replicas"] == 3 and up["inputs"]["target_qps_per_replica"] == 2
    down = decisions[-1]["data"]
    assert ">= downscale delay 5s" in down["reason"], down
    assert down["inputs"]["held_seconds"] >= 4 and down["inputs"]["previous_target"] == 3  # tick 5: 4 s in
    # The replicas scaled down were drained (the router saw them idle), then terminated.
    events = stack.events("surge")
    gone = [e["data"]["replica_id"] for e in of_type(events, "ReplicaTerminated")]
    assert len(gone) == 2, gone
    for rid in gone:
        life = {e["type"]: e for e in events if e["data"].get("replica_id") == rid}
        req, drained, done = (life[t] for t in ("ReplicaTerminationRequested", "ReplicaDrained",
                                                "ReplicaTerminated"))  # fmt: skip
        assert req["data"]["drain_seconds"] == 3 and "scale down" in req["data"]["reason"], req
        assert req["position"] < drained["position"] < done["position"]
    assert running_instances(stack, "surge") == {r["instance_id"] for r in svc["replicas"]}
    print(f"\nTIMING surge: 1->3 READY in {scale_out}s under load, 3->1 in {scale_in}s after load")
    assert stack.cli("down", "surge", "-y").returncode == 0
    stack.wait("surge", lambda s: s["status"] == "TERMINATED", timeout=60, what="TERMINATED")


def test_scale_to_zero_and_back(astack: Stack, tmp_path: Path) -> None:
    stack = astack
    spec = service_yaml(
        tmp_path / "zero.yaml",
        site(tmp_path, "www", "zero v1"),
        policy={"min_replicas": 0, "max_replicas": 2, "target_qps_per_replica": 2,
                "upscale_delay_seconds": 30, "downscale_delay_seconds": 5},
    )  # fmt: skip
    r = stack.cli("up", str(spec), "-n", "zero", "-y", "--detach", check=True)
    assert "requested" in r.stdout
    svc = stack.wait(
        "zero",
        lambda s: (
            s["endpoint"]
            and s["status"] == "NO_REPLICA"
            and not s["replicas"]
            and s["autoscaling"]["last_decision_reason"]
        ),
        timeout=30,
        what="an endpoint, no replica, the initial decision",
    )
    assert svc["autoscaling"]["target_replicas"] == 0
    assert "scaled to zero" in (svc["status_reason"] or ""), svc["status_reason"]
    url = f"http://{svc['endpoint']}/"

    def wake(label: str) -> float:
        before = len(stack.events("zero"))
        t0 = time.monotonic()
        page = httpx.get(url, timeout=90)
        took, answered = _timed(t0), time.time()
        assert page.status_code == 200 and "zero v1" in page.text, (page.status_code, page.text)
        new = stack.events("zero")[before:]
        types = [e["type"] for e in new]
        # The router told the autoscaler at once (its held-request signal, and the queued count
        # of its next QPS sample, whichever is folded first): the next decision scales from zero.
        assert "ScaleFromZeroRequested" in types, types
        decided = of_type(new, "ScaleDecided")
        assert decided, types
        first = decided[0]["data"]
        # No upscale delay from zero (the policy's is 30 s, far longer than the wake-up).
        assert first["target"] >= 1 and "scale from zero" in first["reason"], first
        assert first["inputs"]["previous_target"] == 0 and first["inputs"]["held_seconds"] == 0
        assert took < 25, f"{label}: the held request took {took}s"
        # Answered once a replica was READY (held until then, not refused).
        assert [e for e in new if e["type"] == "ReplicaReady" and event_time(e) <= answered + 0.05], types
        print(f"\nTIMING zero ({label}): held request answered in {took}s")
        return took

    wake("first request")

    # No traffic: after the window empties and the downscale delay, nothing runs.
    t1 = time.monotonic()
    svc = stack.wait(
        "zero",
        lambda s: not alive(s) and not s["replicas"] and s["status"] == "NO_REPLICA",
        timeout=60,
        what="scaled to zero",
    )
    assert svc["replicas_total"] == 0 and svc["autoscaling"]["target_replicas"] == 0
    assert "scaled to zero" in (svc["status_reason"] or "")
    assert running_instances(stack, "zero") == set()
    print(f"\nTIMING zero: scaled to zero {_timed(t1)}s after the last request")
    table = stack.cli("status", "zero", check=True).stdout
    assert "NO_REPLICA" in table and "0/0" in table, table
    down = of_type(stack.events("zero"), "ScaleDecided")[-1]["data"]
    assert down["target"] == 0 and ">= downscale delay 5s" in down["reason"], down

    wake("after scale to zero")
    assert stack.cli("down", "zero", "-y").returncode == 0
    stack.wait("zero", lambda s: s["status"] == "TERMINATED", timeout=60, what="TERMINATED")
    assert running_instances(stack, "zero") == set()


def test_drain_is_bounded_by_the_drain_deadline(astack: Stack, tmp_path: Path) -> None:
    """A stream outlasting the drain time (3 s here) does not keep its replica alive."""
    stack = astack
    spec = service_yaml(
        tmp_path / "slow.yaml",
        mock_llm(tmp_path, "mock"),
        replicas=1,
        run="python3 server.py --port 8080 --model slow --token-delay 0.5",
    )
    stack.cli("up", str(spec), "-n", "slow", "-y", "--timeout", "120", check=True)
    svc = stack.wait("slow", lambda s: len(ready(s)) == 1, what="1 READY replica")
    rid = ready(svc)[0]["replica_id"]
    stream, out = start_stream(f"http://{svc['endpoint']}")  # ~12 s of tokens
    wait_for(lambda: posts(stack, "slow", rid) > 0, 10, "the stream to start")
    stack.cli("down", "slow", "--replica-id", str(rid), "-y", check=True)
    stream.join(30)
    assert not out["done"], out  # cut at the deadline, not waited for
    stack.wait("slow", lambda s: rid not in {r["replica_id"] for r in s["replicas"]}, timeout=30,
               what="the replica terminated")  # fmt: skip
    events = stack.events("slow")
    life = {e["type"]: e for e in events if e["data"].get("replica_id") == rid}
    assert "ReplicaDrained" not in life, sorted(life)
    held = event_time(life["ReplicaTerminated"]) - event_time(life["ReplicaTerminationRequested"])
    assert 3 <= held < 8, held
    print(f"\nTIMING drain deadline: a busy replica terminated {held:.1f}s after the request (drain 3s)")
    assert stack.cli("down", "slow", "-y").returncode == 0
    stack.wait("slow", lambda s: s["status"] == "TERMINATED", timeout=60, what="TERMINATED")
