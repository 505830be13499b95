"""GET /healthz on every process's metrics server: a real scheduler process and a real relay
answer 200 with their lag; a service host answers 503 once its projection has failed, while its
NATS server or its Postgres is gone (and 200 again once it is back); every component of a whole
stack answers, and `stratus local status` shows it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from libs.events.bus import BusConfig
from libs.events.relay import RelayOptions, serve
from libs.events.store import EventStore
from libs.events.types import ServiceRequested, service_stream
from libs.runtime.host import EXIT_PROJECTION_FAILED, ServiceHost
from libs.runtime.settings import Settings
from libs.servers.nats_server import NatsServer
from libs.servers.postgres_server import PostgresServer
from libs.telemetry.health import HealthEndpoint
from libs.telemetry.serve import metrics_endpoints, serve_metrics
from services.api.local_cmd import local_app
from tests.conftest import stack_stream
from tests.e2e.conftest import Stack
from tests.events.helpers import append_raw

Body = dict[str, Any]
Spawn = Callable[..., subprocess.Popen[bytes]]


async def healthz_until(url: str, want: Callable[[int, Body], bool], what: str) -> Body:
    """GET ``url`` until ``want(status, body)`` (for 20 s at most); returns the body."""
    deadline = time.monotonic() + 20
    status, body = 0, {}
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            try:
                r = await http.get(url)
                status, body = r.status_code, r.json()
            except httpx.HTTPError as exc:
                status, body = 0, {"error": repr(exc)}
            if want(status, body):
                return body
            await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: last answer {status} {body}")


async def healthz_url(home: Path, component: str, proc: subprocess.Popen[bytes] | None = None) -> str:
    """Where ``component`` serves /healthz, once its metrics server is up (its file written)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for info in metrics_endpoints(home):
            if info["component"] == component and "healthz" in info:
                return str(info["healthz"])
        assert proc is None or proc.poll() is None, f"{component} exited with {proc.returncode}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"{component}: no /healthz under {home}")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start a Python module as a process of its own (stopped with SIGTERM afterwards)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], module: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{module}-{len(procs)}.log", "wb")  # noqa: SIM115 (the child's)
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def request_web(store: EventStore) -> int:
    return (
        await store.append(service_stream("web"), [ServiceRequested(service="web", spec={})])
    ).last_position


def process_env(home: Path, store: EventStore, nats_url: str, unique: str) -> dict[str, str]:
    return {
        "STRATUS_HOME": str(home), "DATABASE_URL": store.dsn, "NATS_URL": nats_url,
        "STRATUS_BUS_PREFIX": f"t{unique}", "STRATUS_RESYNC_INTERVAL": "1.0",
    }  # fmt: skip


async def test_a_service_process_answers_healthz_with_its_lag_and_local_status_shows_it(
    store: EventStore, nats_url: str, unique: str, tmp_path: Path, spawn: Spawn
) -> None:
    home = tmp_path / "home"
    proc = spawn(process_env(home, store, nats_url, unique), "services.scheduler.main")
    url = await healthz_url(home, "scheduler", proc)
    head = await request_web(store)

    def current(status: int, body: Body) -> bool:
        sampled = status == 200 and body["consumers"]["scheduler"] is not None
        folded = sampled and body["projection"]["lag"] == 0
        return folded and body["projection"]["position"] >= head  # and what the scheduler decided

    body = await healthz_until(url, current, "the scheduler folded the event and sampled its consumer")
    assert body["component"] == "scheduler" and body["healthy"] and body["status"] == "ok"
    assert body["problems"] == [] and body["store"] == "connected" and body["bus"] == "connected"
    assert {k: v for k, v in body["projection"].items() if k != "position"} == {
        "lag": 0, "skipped": 0, "failure": "",
    }  # fmt: skip
    assert body["consumers"]["scheduler"] >= 0

    # `stratus local status` of a supervisor (this test) whose one component is that process.
    state = {"supervisor_pid": os.getpid(), "components": {"scheduler": {"pid": proc.pid, "restarts": 0}}}
    (home / "run" / "supervisor.json").write_text(json.dumps(state))
    env = {"STRATUS_HOME": str(home)}
    out = await asyncio.to_thread(CliRunner().invoke, local_app, ["status", "--json"], env=env)
    assert out.exit_code == 0, out.output
    health = json.loads(out.output)["components"]["scheduler"]["health"]
    assert health["healthy"] and health["projection"]["position"] >= head
    table = await asyncio.to_thread(CliRunner().invoke, local_app, ["status"], env=env)
    assert table.exit_code == 0, table.output
    row = next(line for line in table.output.splitlines() if line.startswith("scheduler"))
    assert row.split()[1:3] == [str(proc.pid), "UP"] and re.search(r" ok \(lag \d+\)$", row), row


Run = tuple[asyncio.Event, "asyncio.Task[None]"]


@pytest.fixture
async def running() -> AsyncIterator[Callable[[ServiceHost], Awaitable[Run]]]:
    """Run a host in this loop; it stays up (serving /healthz) after a stop until ``released``
    is set; the task ends with it."""
    runs: list[tuple[ServiceHost, asyncio.Task[None], asyncio.Event]] = []

    async def start(host: ServiceHost) -> Run:
        released = asyncio.Event()

        async def held() -> None:  # a service's slow shutdown: /healthz still answers meanwhile
            await host.stop.wait()
            await released.wait()

        host.task(held)
        task = asyncio.create_task(host.run())
        runs.append((host, task, released))
        return released, task

    yield start
    for host, task, released in runs:
        host.stop.set()
        released.set()
        await asyncio.wait_for(task, 30)


async def test_a_failed_projection_is_a_503_naming_the_event(
    store: EventStore, nats_url: str, unique: str, tmp_path: Path,
    running: Callable[[ServiceHost], Awaitable[Run]],
) -> None:  # fmt: skip
    settings = Settings(home=tmp_path, database_url=store.dsn, nats_url=nats_url, bus_prefix=f"t{unique}")
    host = ServiceHost("healthz-poisoned", settings)
    released, _ = await running(host)
    url = await healthz_url(tmp_path, "healthz-poisoned")
    await healthz_until(url, lambda status, body: status == 200 and body["bus"] == "connected", "healthy")

    bad = await append_raw(store, "service-web", "ReplicaReady", '{"type": "ReplicaReady", "service": 3}')
    body = await healthz_until(
        url, lambda status, body: status == 503 and "stopping" in body["problems"], "503: failed, stopping"
    )
    assert body["healthy"] is False and body["status"] == "failing"
    assert f"position {bad}" in body["projection"]["failure"]
    assert body["problems"][0].startswith("projection failed:")
    assert body["projection"]["lag"] >= 1 and body["store"] == "connected" and body["bus"] == "connected"
    released.set()
    await healthz_until(url, lambda status, _: status == 0, "the server closed with the process")
    assert host.exit_code == EXIT_PROJECTION_FAILED


async def test_the_bus_gone_is_a_503_and_its_return_a_200(
    store: EventStore, unique: str, tmp_path: Path, running: Callable[[ServiceHost], Awaitable[Run]]
) -> None:
    nats = NatsServer(tmp_path / "nats")
    nats.start()
    try:
        settings = Settings(home=tmp_path, database_url=store.dsn, nats_url=nats.url, bus_prefix=f"t{unique}")
        await running(ServiceHost("healthz-bus", settings))
        url = await healthz_url(tmp_path, "healthz-bus")
        await healthz_until(url, lambda status, body: status == 200 and body["bus"] == "connected", "healthy")

        nats.stop()
        body = await healthz_until(url, lambda status, _: status == 503, "503 with the bus gone")
        assert body["bus"] in ("reconnecting", "disconnected") and f"bus: {body['bus']}" in body["problems"]
        assert body["projection"]["failure"] == "" and body["store"] == "connected"

        nats.start()  # the same port: nats-py reconnects by itself
        body = await healthz_until(url, lambda status, _: status == 200, "200 with the bus back")
        assert body["bus"] == "connected" and body["problems"] == []
    finally:
        nats.stop()


async def test_the_store_gone_is_a_503_and_its_return_a_200(
    nats_url: str, unique: str, tmp_path: Path, running: Callable[[ServiceHost], Awaitable[Run]]
) -> None:
    pg = PostgresServer(tmp_path / "pg")
    await asyncio.to_thread(pg.start)
    try:
        settings = Settings(home=tmp_path, database_url=pg.url, nats_url=nats_url, bus_prefix=f"t{unique}")
        host = ServiceHost("healthz-store", settings)
        released, task = await running(host)
        url = await healthz_url(tmp_path, "healthz-store")
        await healthz_until(
            url, lambda status, body: status == 200 and body["store"] == "connected", "healthy"
        )

        await asyncio.to_thread(pg.stop)
        body = await healthz_until(url, lambda status, _: status == 503, "503 with Postgres gone")
        assert body["store"] == "unreachable" and "store: unreachable" in body["problems"]
        assert (
            body["projection"]["lag"] == -1
            and body["projection"]["failure"] == ""
            and body["bus"] == "connected"
        )

        await asyncio.to_thread(pg.start)
        body = await healthz_until(url, lambda status, _: status == 200, "200 with Postgres back")
        assert body["store"] == "connected" and body["projection"]["lag"] >= 0 and body["problems"] == []
        host.stop.set()  # before Postgres goes for good: the host writes its snapshot on the way out
        released.set()
        await asyncio.wait_for(task, 30)
    finally:
        await asyncio.to_thread(pg.stop)


async def test_the_relay_answers_healthz_as_leader_and_as_standby(
    store: EventStore, nats_url: str, unique: str, tmp_path: Path, spawn: Spawn
) -> None:
    prefix = f"t{unique}"
    bus = BusConfig(stream=stack_stream(prefix), prefix=prefix)
    home = tmp_path / "leader"
    proc = spawn(
        process_env(home, store, nats_url, unique), "libs.events", "relay",
        "--stream", bus.stream, "--prefix", bus.prefix,
    )  # fmt: skip
    url = await healthz_url(home, "relay", proc)
    head = await request_web(store)

    def caught_up(status: int, body: Body) -> bool:
        return status == 200 and body["relay"]["role"] == "leader" and body["relay"]["offset"] == head

    body = await healthz_until(url, caught_up, "the relay leads and has published the event")
    assert body["component"] == "relay" and body["healthy"] and body["problems"] == []
    assert body["relay"] == {"name": "default", "role": "leader", "offset": head, "head": head, "lag": 0}
    assert body["store"] == "connected" and body["bus"] == "connected"

    # A second relay of the same name, in this process: a hot standby, healthy, seeing the lag.
    health = HealthEndpoint("relay")
    standby_url, stop_server = serve_metrics("relay", tmp_path / "standby", health)
    stop = asyncio.Event()
    options = RelayOptions()
    standby = asyncio.create_task(
        serve(store.dsn, nats_url, bus=bus, options=options, stop=stop, health=health)
    )
    try:
        standby_healthz = standby_url.removesuffix("/metrics") + "/healthz"
        body = await healthz_until(
            standby_healthz, lambda status, body: status == 200 and body["relay"]["lag"] == 0, "the standby"
        )
        assert body["relay"]["role"] == "standby" and body["relay"]["offset"] == head
    finally:
        stop.set()
        await asyncio.wait_for(standby, 30)
        stop_server()


HOSTS = ("scheduler", "provisioner", "prober", "autoscaler", "router")


def test_every_component_of_the_stack_answers_healthz(stack: Stack) -> None:
    deadline = time.monotonic() + 60
    while True:
        comps = json.loads(stack.cli("local", "status", "--json", check=True).stdout)["components"]
        healthy = {name: bool((c["health"] or {}).get("healthy")) for name, c in comps.items()}
        if all(healthy.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert set(healthy) >= {"api", "relay", *HOSTS} and all(healthy.values()), comps
    for name in HOSTS:
        health = comps[name]["health"]
        assert health["component"] == name and health["bus"] == "connected", health
        assert health["projection"]["lag"] >= 0 and health["projection"]["failure"] == "", health
    assert "scheduler" in comps["scheduler"]["health"]["consumers"]  # its durable consumer
    assert comps["relay"]["health"]["relay"]["role"] == "leader"
    assert "projection" in comps["api"]["health"] and "bus" not in comps["api"]["health"]


def test_an_answer_is_reused_for_a_second() -> None:
    calls: list[float] = []
    loop = asyncio.new_event_loop()

    async def probe() -> Body:
        calls.append(time.monotonic())
        return {"component": "x", "healthy": True}

    health = HealthEndpoint("x", max_age=1.0, timeout=5.0)
    assert health.answer()[0] == 503  # nothing attached yet: starting
    health.attach(probe, loop)
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        first = health.answer()
        assert first[0] == 200 and health.answer() == first and len(calls) == 1
        health.max_age = 0.0
        assert health.answer()[0] == 200 and len(calls) == 2
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
    status, body = health.answer()  # the loop is closed: the process is on its way out
    assert status == 503 and json.loads(body)["problems"] == ["stopping"]
