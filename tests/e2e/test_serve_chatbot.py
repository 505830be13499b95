"""SkyServe's "Serve a Chatbot LLM" tutorial on the OpenAI-compatible mock (examples/openai-mock.yaml):
the tutorial's curl, token streaming through the router as the replica produces it, a replica's
logs, the event story, and a (simulated) spot preemption that is replaced."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import Stack, replica_processes

NAME = "chatbot"
TOKEN_DELAY = 0.2


def ready_ids(svc: dict[str, Any]) -> set[int]:
    return {r["replica_id"] for r in svc["replicas"] if r["status"] == "READY"}


@pytest.fixture(scope="module")
def chatbot(stack: Stack) -> Iterator[dict[str, Any]]:
    # The YAML's workdir is relative to the repository root, where Stack.cli runs.
    r = stack.cli(
        "up", "examples/openai-mock.yaml", "-n", NAME, "--env", f"TOKEN_DELAY={TOKEN_DELAY}", "-y",
        "--timeout", "120",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr + stack.logs_tail()
    yield stack.wait(NAME, lambda s: len(ready_ids(s)) == 2, timeout=60, what="2 READY replicas")


def test_tutorial_curl_returns_a_chat_completion(chatbot: dict[str, Any]) -> None:
    body = {
        "model": "mock-llm",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Who are you?"},
        ],
        "temperature": 0,
    }
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "30", f"http://{chatbot['endpoint']}/v1/chat/completions", "-X", "POST",
         "-d", json.dumps(body), "-H", "Content-Type: application/json"],
        capture_output=True, text=True, timeout=40,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    assert reply["object"] == "chat.completion", reply
    assert reply["model"] == "mock-llm"
    message = reply["choices"][0]["message"]
    assert message["role"] == "assistant" and "mock language model" in message["content"], reply
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"]["completion_tokens"] > 0


def test_streamed_tokens_arrive_as_they_are_produced(chatbot: dict[str, Any]) -> None:
    body = {"model": "mock-llm", "messages": [{"role": "user", "content": "Who are you?"}], "stream": True}
    arrivals: list[tuple[float, str]] = []
    buffer = ""
    start = time.monotonic()
    with (
        httpx.Client(timeout=httpx.Timeout(30, read=10)) as client,
        client.stream("POST", f"http://{chatbot['endpoint']}/v1/chat/completions", json=body) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for text in resp.iter_text():
            buffer += text
            while "\n\n" in buffer:
                event, buffer = buffer.split("\n\n", 1)
                arrivals.append((time.monotonic() - start, event))
    total = time.monotonic() - start
    events = [e for _, e in arrivals]
    assert events[-1] == "data: [DONE]", events[-3:]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert len(chunks) >= 5, events
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "mock language model" in text, text
    # The replica sleeps TOKEN_DELAY after each token: a proxy that buffered the response would
    # deliver everything at the end.
    assert total >= TOKEN_DELAY * len(chunks) * 0.8, (total, len(chunks))
    first = arrivals[0][0]
    assert first < total / 2, f"first chunk after {first:.2f}s of {total:.2f}s"
    assert first < 2.0, f"first chunk after {first:.2f}s"
    # And they keep trickling in: the middle chunk arrives well before the end too.
    middle = arrivals[len(arrivals) // 2][0]
    assert middle < total - 1.0, f"middle chunk at {middle:.2f}s of {total:.2f}s"


def test_logs_show_a_healthy_replicas_output(stack: Stack, chatbot: dict[str, Any]) -> None:
    # Make sure each replica served something first (the router spreads requests over both).
    with httpx.Client(timeout=10) as client:
        for _ in range(6):
            resp = client.post(
                f"http://{chatbot['endpoint']}/v1/chat/completions",
                json={"model": "mock-llm", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert resp.status_code == 200
    for rid in sorted(ready_ids(chatbot)):
        r = stack.cli("logs", NAME, str(rid), "--no-follow", timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "===== run started =====" in r.stdout, r.stdout
        assert "openai-mock serving mock-llm on 0.0.0.0:8080" in r.stdout, r.stdout
        assert '"POST /v1/chat/completions HTTP/1.1" 200' in r.stdout, r.stdout
        # --tail limits it.
        tail = stack.cli("logs", NAME, str(rid), "--no-follow", "--tail", "2", timeout=30)
        assert tail.returncode == 0 and len(tail.stdout.splitlines()) == 2, tail.stdout


def test_events_tell_the_story(stack: Stack, chatbot: dict[str, Any]) -> None:
    r = stack.cli("events", "--service", NAME, timeout=30)
    assert r.returncode == 0, r.stderr
    header, *lines = r.stdout.splitlines()
    assert header.split()[:2] == ["POSITION", "TIME"], header
    assert lines and all(f"  {NAME}  " in line for line in lines), r.stdout
    types = [line.split()[4] for line in lines]
    story = [
        "ServiceRequested", "ReplicaScheduled", "ReplicaProvisioningStarted", "ReplicaLaunched",
        "ReplicaReady",
    ]  # fmt: skip
    firsts = [types.index(t) for t in story]
    assert firsts == sorted(firsts), types
    assert "EndpointAssigned" in types
    assert types.count("ReplicaReady") == 2, types
    positions = [int(line.split()[0]) for line in lines]
    assert positions == sorted(positions)


def test_debug_preempt_replaces_the_replica(stack: Stack, chatbot: dict[str, Any]) -> None:
    svc = stack.service(NAME)
    assert len(ready_ids(svc)) == 2
    victim = min(ready_ids(svc))
    instance = next(r["instance_id"] for r in svc["replicas"] if r["replica_id"] == victim)

    r = stack.cli("debug", "preempt", NAME, str(victim), timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"preemption of replica {victim}" in r.stdout.lower(), r.stdout

    after = stack.wait(
        NAME, lambda s: len(ready_ids(s) - {victim}) == 2, timeout=60, what="a replacement READY replica"
    )
    assert after["status"] == "READY"
    assert victim not in {r["replica_id"] for r in after["replicas"]}
    assert len(after["replicas"]) == 2, after["replicas"]

    events = stack.events(NAME)
    mine = [e["type"] for e in events if e["data"].get("replica_id") == victim]
    story = ["PreemptionRequested", "Preempted", "ReplicaTerminationRequested", "ReplicaTerminated"]
    assert [t for t in mine if t in story] == story, mine
    assert "ReplicaProcessExited" not in mine, mine  # a preemption, not a crash
    (new,) = ready_ids(after) - ready_ids(svc)
    assert new > max(ready_ids(svc))
    preempted_at = next(e["position"] for e in events if e["type"] == "Preempted")
    scheduled_at = next(
        e["position"] for e in events if e["type"] == "ReplicaScheduled" and e["data"]["replica_id"] == new
    )
    assert preempted_at < scheduled_at
    assert replica_processes(instance) == []

    # Served again by two replicas.
    with httpx.Client(timeout=10) as client:
        for _ in range(10):
            resp = client.post(
                f"http://{after['endpoint']}/v1/chat/completions",
                json={"model": "mock-llm", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert resp.status_code == 200 and resp.json()["object"] == "chat.completion"
