"""Helpers for the autoscaling and update end-to-end tests: a stack with fast knobs, replica
workdirs, service YAMLs, a bounded load generator and a streaming client."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from libs.servers.ports import free_port

from .conftest import REPO, Stack, replica_processes

# Fast control loops: QPS sampled every second over a 5 s window, a decision every second.
FAST_ENV = {
    "STRATUS_QPS_INTERVAL": "1",
    "STRATUS_QPS_WINDOW": "5",
    "STRATUS_DECISION_INTERVAL": "1",
    "STRATUS_DRAIN_SECONDS": "3",
    "STRATUS_PROBE_INTERVAL": "0.5",
    "STRATUS_MONITOR_INTERVAL": "0.5",
    "STRATUS_RESYNC_INTERVAL": "1.0",
}


@contextmanager
def fast_stack(home: Path, nats_url: str, db_url: str, **extra: str) -> Iterator[Stack]:
    env = {
        **os.environ,
        "STRATUS_HOME": str(home),
        "NATS_URL": nats_url,
        "DATABASE_URL": db_url,
        "STRATUS_API_URL": f"http://127.0.0.1:{free_port()}",
        "STRATUS_BUS_PREFIX": f"e2e{uuid.uuid4().hex[:8]}",
        "STRATUS_ROUTER_ID": f"router-e2e-{uuid.uuid4().hex[:6]}",
        "PYTHONUNBUFFERED": "1",
        **FAST_ENV,
        **extra,
    }
    s = Stack(home, env)
    s.start()
    try:
        yield s
    finally:
        s.stop()


# --------------------------------------------------------------------------- replicas


def site(root: Path, name: str, text: str) -> Path:
    """A workdir whose index.html says ``text`` (served by ``python3 -m http.server``)."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "index.html").write_text(f"<html><body>{text}</body></html>\n")
    return d


def mock_llm(root: Path, name: str) -> Path:
    """A workdir holding the OpenAI mock server (its TOKEN_DELAY slows streams down)."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "examples" / "openai-mock" / "server.py", d / "server.py")
    return d


def service_yaml(
    path: Path,
    workdir: Path,
    *,
    policy: dict[str, Any] | None = None,
    replicas: int | None = None,
    run: str = "python3 -m http.server 8080",
    lb: str | None = None,
    probe_path: str = "/",
    initial_delay: int = 30,
    envs: dict[str, str] | None = None,
) -> Path:
    lines = ["service:", "  readiness_probe:", f"    path: {probe_path}",
             f"    initial_delay_seconds: {initial_delay}"]  # fmt: skip
    if policy is not None:
        lines.append("  replica_policy:")
        lines += [f"    {k}: {v}" for k, v in policy.items()]
    if replicas is not None:
        lines.append(f"  replicas: {replicas}")
    if lb is not None:
        lines.append(f"  load_balancing_policy: {lb}")
    lines += ["resources:", "  ports: 8080", f"workdir: {workdir}"]
    if envs:
        lines.append("envs:")
        lines += [f"  {k}: {v!r}" for k, v in envs.items()]
    lines += ["run: |", f"  {run}"]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- projections


ALIVE = {"PENDING", "PROVISIONING", "STARTING", "READY", "NOT_READY"}


def by_status(svc: dict[str, Any], *statuses: str) -> list[dict[str, Any]]:
    return [r for r in svc["replicas"] if r["status"] in statuses]


def ready(svc: dict[str, Any], version: int | None = None) -> list[dict[str, Any]]:
    return [r for r in by_status(svc, "READY") if version is None or r["version"] == version]


def alive(svc: dict[str, Any]) -> list[dict[str, Any]]:
    return by_status(svc, *ALIVE)


def running_instances(stack: Stack, service: str) -> set[str]:
    """Instances of this service (every one it ever launched) that still have a process."""
    instances = {
        e["data"].get("instance_id") for e in stack.events(service) if e["type"] == "ReplicaLaunched"
    }
    return {iid for iid in instances if iid and replica_processes(iid)}


def of_type(events: list[dict[str, Any]], *types: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] in types]


# --------------------------------------------------------------------------- load


@dataclass
class Result:
    at: float  # wall clock, when sent
    done: float  # wall clock, when answered
    status: int | None
    body: str = ""
    error: str = ""


@dataclass
class Load:
    """``rate`` requests per second through ``url`` from ``workers`` threads, for at most
    ``seconds`` and ``max_requests`` requests, until ``stop()``. Every result is kept."""

    url: str
    rate: float
    seconds: float
    workers: int = 4
    max_requests: int = 10_000
    timeout: float = 30.0
    results: list[Result] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = 0.0

    def start(self) -> Load:
        self.started = time.monotonic()
        for _ in range(self.workers):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> Load:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        return self

    def _slot(self) -> float | None:
        with self._lock:
            i = self._next
            self._next += 1
        at = self.started + i / self.rate
        if i >= self.max_requests or at > self.started + self.seconds:
            return None
        return at

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                at = self._slot()
                if at is None:
                    return
                delay = at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                sent = time.time()
                try:
                    r = client.get(self.url)
                    res = Result(sent, time.time(), r.status_code, r.text[:300])
                except httpx.HTTPError as exc:
                    res = Result(sent, time.time(), None, error=repr(exc))
                with self._lock:
                    self.results.append(res)

    @property
    def ok(self) -> list[Result]:
        return [r for r in self.results if r.status == 200]

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status != 200]


def stream_chat(url: str, out: dict[str, Any], timeout: float = 60.0) -> None:
    """One streaming chat completion through ``url``; fills ``out``: status, chunks, done
    (``[DONE]`` seen), text (the streamed content), error, started/ended (wall clock)."""
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    out.update(status=None, chunks=0, done=False, error="", text="", started=time.time())
    try:
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream("POST", f"{url}/v1/chat/completions", json=body) as r,
        ):
            out["status"] = r.status_code
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                out["chunks"] += 1
                if line == "data: [DONE]":
                    out["done"] = True
                    continue
                for choice in json.loads(line[6:]).get("choices", []):
                    out["text"] += choice.get("delta", {}).get("content", "")
    except httpx.HTTPError as exc:
        out["error"] = repr(exc)
    out["ended"] = time.time()


def start_stream(url: str, timeout: float = 60.0) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}
    t = threading.Thread(target=stream_chat, args=(url, out, timeout), daemon=True)
    t.start()
    return t, out


def replica_log(stack: Stack, service: str, replica_id: int) -> Path:
    return stack.home / "provisioner" / "logs" / service / f"replica-{replica_id}.log"


def posts(stack: Stack, service: str, replica_id: int) -> int:
    """Chat completions a mock replica began answering (it logs each when the head is sent)."""
    path = replica_log(stack, service, replica_id)
    if not path.exists():
        return 0
    return path.read_text(errors="replace").count('"POST /v1/chat/completions HTTP/1.1" 200')


def wait_for(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def event_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")).timestamp()
