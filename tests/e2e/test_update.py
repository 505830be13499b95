"""Zero-downtime updates end to end: rolling and blue-green under continuous traffic, a broken
new version that leaves the old one serving, and draining (a long stream in flight finishes
before its replica is terminated, on update, `down --replica-id` and `down`)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    start_stream,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)

# Long enough for any stream in these tests; the router's ReplicaDrained ends it early.
DRAIN_SECONDS = 20
MOCK_RUN = "python3 server.py --port 8080 --model $MODEL_NAME --token-delay $TOKEN_DELAY"
# The mock streams ~25 tokens: about 7.5 s at this delay.
SLOW = "0.3"


@pytest.fixture(scope="module")
def ustack(tmp_path_factory: pytest.TempPathFactory, nats_url: str, stack_db: str) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stratus-update")
    with fast_stack(home, nats_url, stack_db, STRATUS_DRAIN_SECONDS=str(DRAIN_SECONDS)) as s:
        yield s


def mock_yaml(
    tmp: Path, name: str, model: str, *, token_delay: str = SLOW, run: str = MOCK_RUN, **kw: Any
) -> Path:
    return service_yaml(
        tmp / f"{name}.yaml",
        mock_llm(tmp, "mock"),
        run=run,
        envs={"MODEL_NAME": model, "TOKEN_DELAY": token_delay},
        **kw,
    )


def served_by(text: str) -> int:
    m = re.search(r"replica (\d+)", text)
    assert m, text
    return int(m.group(1))


def stream_replica(stack: Stack, service: str, candidates: list[int], before: dict[int, int]) -> int:
    """Which replica began answering the stream just started (its log shows the POST)."""

    def found() -> int | None:
        for rid in candidates:
            if posts(stack, service, rid) > before.get(rid, 0):
                return rid
        return None

    rid: int = wait_for(found, 10, "the stream to reach a replica")
    return rid


def lifecycle(events: list[dict[str, Any]], replica_id: int) -> dict[str, dict[str, Any]]:
    """The first event of each type about one replica."""
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["data"].get("replica_id") == replica_id:
            out.setdefault(e["type"], e)
    return out


def assert_drained_then_terminated(events: list[dict[str, Any]], replica_id: int) -> dict[str, Any]:
    life = lifecycle(events, replica_id)
    req, drained, done = (
        life.get("ReplicaTerminationRequested"),
        life.get("ReplicaDrained"),
        life.get("ReplicaTerminated"),
    )
    assert req and drained and done, sorted(life)
    assert req["data"]["drain_seconds"] == DRAIN_SECONDS, req
    assert req["position"] < drained["position"] < done["position"]
    return {"requested": event_time(req), "drained": event_time(drained), "terminated": event_time(done),
            "waited": drained["data"]["waited_seconds"]}  # fmt: skip


def test_rolling_update_under_traffic(ustack: Stack, tmp_path: Path) -> None:
    stack = ustack
    v1 = mock_yaml(tmp_path, "v1", "page-v1", replicas=2)
    v2 = mock_yaml(tmp_path, "v2", "page-v2", replicas=2)
    stack.cli("up", str(v1), "-n", "roll", "-y", "--timeout", "120", check=True)
    svc = stack.wait("roll", lambda s: len(ready(s)) == 2, what="2 READY replicas")
    url = f"http://{svc['endpoint']}"
    old = sorted(r["replica_id"] for r in svc["replicas"])

    # A long stream in flight on a v1 replica, and continuous traffic.
    before = {rid: posts(stack, "roll", rid) for rid in old}
    stream, out = start_stream(url)
    streamed_on = stream_replica(stack, "roll", old, before)
    load = Load(f"{url}/", rate=10, seconds=90).start()
    time.sleep(1)
    t0 = time.monotonic()
    r = stack.cli("update", "roll", str(v2), "--mode", "rolling", "-y", "--async", check=True)
    assert "version 2 requested (rolling)" in r.stdout, r.stdout
    mixed: list[list[int]] = []

    def done(s: dict[str, Any]) -> bool:
        mixed.append(s["versions"])
        return len(ready(s, 2)) == 2 and all(x["version"] == 2 for x in s["replicas"])

    try:
        svc = stack.wait("roll", done, timeout=90, what="every replica on version 2")
        took = round(time.monotonic() - t0, 1)
        completed = time.time()
        time.sleep(1.5)
    finally:
        load.stop()
    stream.join(30)

    assert load.failures == [], [(f.status, f.error, f.body) for f in load.failures[:5]]
    bodies = [(x.at, x.body) for x in load.ok]
    assert any("page-v1" in b for _, b in bodies) and any("page-v2" in b for _, b in bodies)
    late = [b for at, b in bodies if at > completed]
    assert late and all("page-v2" in b for b in late), late[:3]
    assert [1, 2] in mixed, mixed  # both versions were serving during the update
    assert svc["version"] == 2 and svc["versions"] == [2] and svc["update_mode"] == "rolling"

    # The stream on the old replica finished whole; its replica was drained, then terminated.
    assert out["status"] == 200 and out["done"] and not out["error"], out
    assert f"replica {streamed_on}." in out["text"], out["text"]
    events = stack.events("roll")
    times = {rid: assert_drained_then_terminated(events, rid) for rid in old}
    assert times[streamed_on]["terminated"] >= out["ended"] - 0.2, (times, out["ended"])
    assert times[streamed_on]["waited"] > 1, times
    idle = [rid for rid in old if rid != streamed_on]
    # An idle old replica is terminated as soon as the router saw it drained, not after 20 s.
    assert all(times[rid]["terminated"] - times[rid]["requested"] < 5 for rid in idle), times
    assert running_instances(stack, "roll") == {x["instance_id"] for x in svc["replicas"]}

    table = stack.cli("status", "roll", check=True).stdout
    row = next(line for line in table.splitlines() if line.startswith("roll "))
    assert row.split()[1] == "2" and "READY" in row, table
    detail = stack.cli("status", "-v", "roll", check=True).stdout
    assert "Versions:    2 (latest 2, rolling update)" in detail, detail
    print(f"\nTIMING rolling: update done in {took}s; {len(load.ok)} requests, 0 failed; "
          f"stream drained {times[streamed_on]['waited']}s")  # fmt: skip

    # `down --replica-id` drains too: a stream in flight on it finishes before it goes away.
    new = sorted(x["replica_id"] for x in svc["replicas"])
    before = {rid: posts(stack, "roll", rid) for rid in new}
    stream, out = start_stream(url)
    victim = stream_replica(stack, "roll", new, before)
    r = stack.cli("down", "roll", "--replica-id", str(victim), "-y", check=True)
    assert "being terminated" in r.stdout
    with httpx.Client(timeout=10) as client:  # new requests go to the other replica meanwhile
        for _ in range(5):
            page = client.get(f"{url}/")
            assert page.status_code == 200 and "page-v2" in page.text
    stream.join(30)
    assert out["status"] == 200 and out["done"] and not out["error"], out
    stack.wait("roll", lambda s: victim not in {x["replica_id"] for x in s["replicas"]}, timeout=30,
               what="the replica terminated")  # fmt: skip
    t = assert_drained_then_terminated(stack.events("roll"), victim)
    assert t["terminated"] >= out["ended"] - 0.2 and t["waited"] > 1, (t, out)
    print(f"TIMING down --replica-id: stream drained {t['waited']}s, terminated after the stream")

    # `down` drains as well: a stream in flight finishes, then everything ends.
    svc = stack.wait("roll", lambda s: len(ready(s)) == 2, timeout=60, what="the replacement READY")
    now = sorted(x["replica_id"] for x in svc["replicas"])
    before = {rid: posts(stack, "roll", rid) for rid in now}
    stream, out = start_stream(url)
    last = stream_replica(stack, "roll", now, before)
    assert stack.cli("down", "roll", "-y").returncode == 0
    stream.join(30)
    assert out["status"] == 200 and out["done"] and not out["error"], out
    stack.wait("roll", lambda s: s["status"] == "TERMINATED", timeout=60, what="TERMINATED")
    t = assert_drained_then_terminated(stack.events("roll"), last)
    assert t["terminated"] >= out["ended"] - 0.2, (t, out)
    assert running_instances(stack, "roll") == set()


def test_blue_green_update_switches_when_ready(ustack: Stack, tmp_path: Path) -> None:
    stack = ustack
    v1 = mock_yaml(tmp_path, "v1", "page-v1", replicas=2, lb="least_load")
    v2 = mock_yaml(tmp_path, "v2", "page-v2", replicas=2, lb="round_robin")
    stack.cli("up", str(v1), "-n", "bg", "-y", "--timeout", "120", check=True)
    svc = stack.wait("bg", lambda s: len(ready(s)) == 2, what="2 READY replicas")
    url = f"http://{svc['endpoint']}"
    old = sorted(r["replica_id"] for r in svc["replicas"])
    assert svc["spec"]["service"]["load_balancing_policy"] == "least_load"

    load = Load(f"{url}/", rate=10, seconds=90).start()
    time.sleep(1)
    t0, asked = time.monotonic(), time.time()
    stack.cli("update", "bg", str(v2), "--mode", "blue_green", "-y", "--async", check=True)
    seen_waiting = []

    def done(s: dict[str, Any]) -> bool:
        if s["status_reason"] and "blue-green update to version 2" in s["status_reason"]:
            seen_waiting.append(s["status_reason"])
        return len(ready(s, 2)) == 2 and all(x["version"] == 2 for x in s["replicas"])

    try:
        svc = stack.wait("bg", done, timeout=90, what="blue-green switch done")
        took = round(time.monotonic() - t0, 1)
        completed = time.time()
        time.sleep(1.5)
    finally:
        load.stop()
    assert load.failures == [], [(f.status, f.error, f.body) for f in load.failures[:5]]
    assert seen_waiting, "the status never said traffic was still on the old version"

    events = stack.events("bg")
    switch = of_type(events, "TrafficSwitched")
    assert len(switch) == 1 and switch[0]["data"]["versions"] == [2], switch
    switched_at = event_time(switch[0])
    new = sorted({e["data"]["replica_id"] for e in of_type(events, "ReplicaScheduled")} - set(old))
    ready_v2 = [e for e in of_type(events, "ReplicaReady") if e["data"]["replica_id"] in new]
    # The switch came only once min_replicas (2) v2 replicas were READY.
    assert len(ready_v2) >= 2 and ready_v2[1]["position"] < switch[0]["position"], (ready_v2, switch)
    # No response said v2 before the switch; after completion every one says v2.
    v2_answers = [x for x in load.ok if "page-v2" in x.body]
    assert v2_answers and min(x.done for x in v2_answers) >= switched_at - 0.05
    v1_answers = [x for x in load.ok if "page-v1" in x.body]
    assert v1_answers and max(x.at for x in v1_answers) <= switched_at + 2, "v1 served long after the switch"
    late = [x.body for x in load.ok if x.at > completed]
    assert late and all("page-v2" in b for b in late), late[:3]
    for rid in old:  # the old set drained (idle: at once), then terminated
        t = assert_drained_then_terminated(events, rid)
        assert t["requested"] >= switched_at - 0.05 and t["terminated"] - t["requested"] < 5, t
    assert running_instances(stack, "bg") == {x["instance_id"] for x in svc["replicas"]}
    print(f"\nTIMING blue-green: traffic switched {round(switched_at - asked, 1)}s after the update, "
          f"done in {took}s; {len(load.ok)} requests, 0 failed")  # fmt: skip

    # The new load-balancing policy applies: round_robin ignores load, least_load would not.
    assert svc["spec"]["service"]["load_balancing_policy"] == "round_robin"
    new = sorted(x["replica_id"] for x in svc["replicas"])
    before = {rid: posts(stack, "bg", rid) for rid in new}
    stream, out = start_stream(url)
    busy = stream_replica(stack, "bg", new, before)
    hits: dict[int, int] = {}
    with httpx.Client(timeout=10) as client:
        for _ in range(10):
            r = client.post(f"{url}/v1/chat/completions", json={"messages": [], "max_tokens": 11})
            assert r.status_code == 200
            rid = served_by(r.json()["choices"][0]["message"]["content"])
            hits[rid] = hits.get(rid, 0) + 1
    # least_load would send all 10 to the idle replica while the busy one streams.
    assert hits.get(busy, 0) >= 3, (busy, hits)
    stream.join(30)
    assert out["done"] and not out["error"], out
    assert stack.cli("down", "bg", "-y").returncode == 0
    stack.wait("bg", lambda s: s["status"] == "TERMINATED", timeout=60, what="TERMINATED")
    assert running_instances(stack, "bg") == set()


def test_broken_update_keeps_the_old_version_serving(ustack: Stack, tmp_path: Path) -> None:
    stack = ustack
    v1 = mock_yaml(tmp_path, "v1", "page-v1", replicas=2)
    # v2's run exits at once; v3 runs but never answers its readiness probe.
    v2 = mock_yaml(tmp_path, "v2", "page-v2", replicas=2, run="echo 'boom: no model weights' >&2; exit 3")
    v3 = mock_yaml(tmp_path, "v3", "page-v3", replicas=2, run="sleep 600", initial_delay=2)
    stack.cli("up", str(v1), "-n", "broken", "-y", "--timeout", "120", check=True)
    svc = stack.wait("broken", lambda s: len(ready(s)) == 2, what="2 READY replicas")
    url = f"http://{svc['endpoint']}/"
    old = {r["replica_id"] for r in svc["replicas"]}

    load = Load(url, rate=8, seconds=120).start()
    try:
        t0 = time.monotonic()
        stack.cli("update", "broken", str(v2), "--mode", "rolling", "-y", "--async", check=True)
        svc = stack.wait(
            "broken",
            lambda s: "version 2 failed" in (s["status_reason"] or ""),
            timeout=60,
            what="version 2 given up",
        )
        t2 = round(time.monotonic() - t0, 1)
        reason = svc["status_reason"]
        assert svc["status"] == "READY" and "keeping version 1" in reason, reason
        # The reason names the exit; the workload's own output stays out of events, in its log.
        assert "run exited with code 3" in reason and "boom: no model weights" not in reason, reason
        failed = [r for r in svc["replicas"] if r["version"] == 2]
        assert failed, svc["replicas"]
        out = stack.cli("logs", "broken", str(failed[-1]["replica_id"]), "--no-follow", timeout=30)
        assert "boom: no model weights" in out.stdout, out.stdout + out.stderr
        assert {r["replica_id"] for r in ready(svc, 1)} == old

        t0 = time.monotonic()
        stack.cli("update", "broken", str(v3), "--mode", "blue_green", "-y", "--async", check=True)
        svc = stack.wait(
            "broken",
            lambda s: "version 3 failed" in (s["status_reason"] or ""),
            timeout=90,
            what="version 3 given up",
        )
        t3 = round(time.monotonic() - t0, 1)
        reason = svc["status_reason"]
        assert svc["status"] == "READY" and "keeping version 1" in reason, reason
        assert "FAILED_INITIAL_DELAY" in reason and "not ready 2s after launch" in reason, reason
        assert {r["replica_id"] for r in ready(svc, 1)} == old
        time.sleep(2)
    finally:
        load.stop()
    assert load.failures == [], [(f.status, f.error, f.body) for f in load.failures[:5]]
    assert len(load.ok) > 50 and all("page-v1" in x.body for x in load.ok)
    assert not [r for r in alive(svc) if r["version"] != 1]
    detail = stack.cli("status", "-v", "broken", check=True).stdout
    assert "keeping version 1" in detail, detail
    print(f"\nTIMING broken: v2 (exits) given up in {t2}s, v3 (never ready) in {t3}s; "
          f"{len(load.ok)} requests, 0 failed")  # fmt: skip
    assert stack.cli("down", "broken", "-y").returncode == 0
    stack.wait("broken", lambda s: s["status"] == "TERMINATED", timeout=60, what="TERMINATED")
    assert running_instances(stack, "broken") == set()
