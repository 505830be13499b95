"""The ``stratus`` CLI against a live API (uvicorn on 127.0.0.1): the CLI runs in a worker thread
while the test's event loop serves the API and records what the other services would."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from libs.events.types import PreemptionRequested, ServiceUpdateRequested, replica_stream, service_stream
from services.api.cli import app
from services.api.cli.overrides import TaskOverrides
from services.api.cli.serve import with_overrides
from services.api.logfiles import COMPONENTS

from .conftest import SERVICE_YAML, Live
from .fleet_events import assign_endpoint, decide_scale, fail_replica, launch_replica

runner = CliRunner()


async def cli(live: Live, *args: str, input: str | None = None) -> Result:
    invoke = functools.partial(
        runner.invoke, app, ["--api-url", live.url, *args], input=input,
        env={"STRATUS_API_TOKEN": live.api.token},
    )  # fmt: skip
    return await asyncio.to_thread(invoke)


async def service_appears(live: Live, name: str) -> None:
    for _ in range(400):
        if name in live.api.projection.state.services:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"service {name!r} was never requested")


async def create(live: Live, name: str, yaml: str = SERVICE_YAML) -> None:
    async with asyncio.timeout(10):
        r = await live.api.http.post("/v1/services", json={"name": name, "yaml": yaml})
    assert r.status_code == 201, r.text


async def synced(live: Live) -> None:
    await live.api.projection.wait_for(await live.api.store.last_position(), 5.0)


def spec_file(tmp_path: Path, text: str = SERVICE_YAML, name: str = "service.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def column_of(header: str, name: str) -> int:
    return header.index(name)


async def test_status_shows_skyserve_tables(live: Live) -> None:
    await create(live, "vllm")
    await launch_replica(live.api.store, "vllm", 1, ip="10.0.0.121")
    await launch_replica(live.api.store, "vllm", 2, ip="10.0.0.245")
    await assign_endpoint(live.api.store, "vllm", "http://127.0.0.1:30001")
    await synced(live)
    result = await cli(live, "status")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Services"
    assert lines[1].split() == ["NAME", "VERSION", "UPTIME", "STATUS", "REPLICAS", "ENDPOINT"]
    row = lines[2]
    assert row.split()[0:2] == ["vllm", "1"] and row.split()[-3:] == ["READY", "2/2", "127.0.0.1:30001"]
    assert row[column_of(lines[1], "STATUS") :].startswith("READY")
    assert row[column_of(lines[1], "ENDPOINT") :] == "127.0.0.1:30001"
    i = lines.index("Service Replicas")
    assert lines[i - 2 : i] == ["", ""]
    header = lines[i + 1]
    assert header.split() == [
        "SERVICE_NAME",
        "ID",
        "VERSION",
        "IP",
        "LAUNCHED",
        "RESOURCES",
        "STATUS",
        "REGION",
        "HOURLY_PRICE",
    ]
    replica = lines[i + 2]
    assert replica[column_of(header, "IP") :].startswith("10.0.0.121")
    assert replica[column_of(header, "RESOURCES") :].startswith("1x GCP([Spot]{'L4': 1})")
    assert replica[column_of(header, "STATUS") :].startswith("READY")
    assert replica[column_of(header, "REGION") :].startswith("us-east4 (us-east4-a)")
    assert "a few secs ago" in replica


async def test_status_verbose_json_endpoint(live: Live) -> None:
    await create(live, "chat")
    await launch_replica(live.api.store, "chat", 1)
    await assign_endpoint(live.api.store, "chat", "http://127.0.0.1:30002")
    await decide_scale(live.api.store, "chat", 2, "qps 4.1 above 2 x 2.0 for 300s")
    await synced(live)
    verbose = await cli(live, "status", "-v")
    assert verbose.exit_code == 0, verbose.output
    assert "Service Details" in verbose.stdout
    assert "Policy:      fixed, 2 replicas" in verbose.stdout
    assert "Replicas:    current 1, target 2" in verbose.stdout
    assert "Last scale:  qps 4.1 above 2 x 2.0 for 300s" in verbose.stdout
    assert "Versions:    1 (latest 1)" in verbose.stdout
    endpoint = await cli(live, "status", "--endpoint", "chat")
    assert endpoint.exit_code == 0 and endpoint.stdout == "127.0.0.1:30002\n"
    as_json = await cli(live, "status", "chat", "--json")
    assert as_json.exit_code == 0 and '"endpoint": "http://127.0.0.1:30002"' in as_json.stdout


async def test_up_shows_the_plan_then_waits_for_the_endpoint(live: Live, tmp_path: Path) -> None:
    path = spec_file(tmp_path)
    store = live.api.store
    call = asyncio.create_task(
        cli(live, "up", str(path), "-n", "web", "-y", "--timeout", "30", "--poll-interval", "0.05")
    )
    await service_appears(live, "web")
    await assign_endpoint(store, "web", "http://127.0.0.1:30003")
    await launch_replica(store, "web", 1)
    result = await asyncio.wait_for(call, 30)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Deploying service 'web' (version 1):" in out
    assert "service web: 2 replicas, port 8080, probe GET /" in out
    assert "Service 'web' is READY.\nEndpoint: http://127.0.0.1:30003" in out


async def test_up_exits_1_with_the_reason_when_the_service_fails(live: Live, tmp_path: Path) -> None:
    path = spec_file(tmp_path)
    store = live.api.store
    call = asyncio.create_task(cli(live, "up", str(path), "-n", "broken", "-y", "--poll-interval", "0.05"))
    await service_appears(live, "broken")
    for rid in (1, 2, 3):
        await launch_replica(store, "broken", rid, ready=False)
        await fail_replica(store, "broken", rid, "GET / timed out after 15s")
    result = await asyncio.wait_for(call, 30)
    assert result.exit_code == 1
    assert "service 'broken' is FAILED: " in result.stderr
    assert "GET / timed out after 15s" in result.stderr


async def test_up_on_invalid_yaml_names_the_field(live: Live, tmp_path: Path) -> None:
    bad = spec_file(tmp_path, SERVICE_YAML.replace("replicas: 2", "replicas: two"), "bad.yaml")
    result = await cli(live, "up", str(bad), "-y")
    assert result.exit_code == 1
    assert "bad.yaml: service.replicas (line 3): must be an integer, got string 'two'" in result.stderr
    assert result.stdout == ""
    missing = await cli(live, "up", str(tmp_path / "missing.yaml"), "-y")
    assert missing.exit_code == 1 and "no such file" in missing.stderr
    noenv = await cli(live, "up", str(spec_file(tmp_path)), "-y", "--env", "STRATUS_TEST_UNSET_VARIABLE")
    assert noenv.exit_code == 1 and "is not set in your environment" in noenv.stderr
    assert await live.api.store.last_position() == 0


async def test_up_names_the_service_after_the_file_by_default(live: Live, tmp_path: Path) -> None:
    result = await cli(live, "up", str(spec_file(tmp_path, name="hello-sky-serve.yaml")), "-y", "--detach")
    assert result.exit_code == 0, result.output
    assert "Service 'hello-sky-serve' requested (version 1" in result.stdout
    named = await cli(
        live, "up", str(spec_file(tmp_path, "name: from-yaml\n" + SERVICE_YAML)), "-y", "--detach"
    )
    assert named.exit_code == 0 and "Service 'from-yaml' requested" in named.stdout


async def test_up_asks_before_deploying(live: Live, tmp_path: Path) -> None:
    result = await cli(live, "up", str(spec_file(tmp_path)), "-n", "asked", input="n\n")
    assert result.exit_code == 1 and "Proceed?" in result.stdout
    assert await live.api.store.last_position() == 0
    await create(live, "taken")
    dup = await cli(live, "up", str(spec_file(tmp_path)), "-n", "taken", "-y")
    assert dup.exit_code == 1 and "service 'taken' already exists" in dup.stderr


async def test_unknown_services_and_replicas_are_clear_errors(live: Live, tmp_path: Path) -> None:
    await create(live, "real")
    await launch_replica(live.api.store, "real", 1)
    await synced(live)
    for args in (
        ("status", "nope"),
        ("down", "nope", "-y"),
        ("logs", "nope", "1", "--no-follow"),
        ("update", "nope", str(spec_file(tmp_path)), "-y"),
        ("debug", "preempt", "nope", "1"),
    ):
        result = await cli(live, *args)
        assert result.exit_code == 1, args
        assert "service 'nope' not found" in result.stderr, (args, result.stderr)
    partly = await cli(live, "status", "real", "nope")
    assert partly.exit_code == 1 and "real" in partly.stdout and "service 'nope' not found" in partly.stderr
    replica = await cli(live, "down", "real", "--replica-id", "9", "-y")
    assert replica.exit_code == 1
    assert "service 'real' has no replica 9 (its replicas: 1)" in replica.stderr
    logs = await cli(live, "logs", "real", "9", "--no-follow")
    assert logs.exit_code == 1 and "has no replica 9" in logs.stderr
    usage = await cli(live, "logs", "real", "1", "--controller")
    assert usage.exit_code == 1 and "one and only one of" in usage.stderr


def test_api_unreachable_says_where_and_what_to_do() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = runner.invoke(app, ["status"], env={"STRATUS_API_URL": url})
    assert result.exit_code == 1
    assert f"cannot reach the Stratus API at {url}" in result.stderr
    assert "stratus local up" in result.stderr


async def test_down_services_and_one_replica(live: Live) -> None:
    await create(live, "one")
    await create(live, "two")
    await launch_replica(live.api.store, "one", 1)
    await synced(live)
    kept = await cli(live, "down", "--all", input="n\n")
    assert kept.exit_code == 1 and "Terminating service(s) 'one', 'two'" in kept.stdout
    replica = await cli(live, "down", "one", "--replica-id", "1", "-y")
    assert replica.exit_code == 0 and "Replica 1 of 'one' is being terminated." in replica.stdout
    gone = await cli(live, "down", "--all", "-y")
    assert gone.exit_code == 0, gone.output
    assert (
        "Service 'one' is shutting down." in gone.stdout and "Service 'two' is shutting down." in gone.stdout
    )
    status = await cli(live, "status")
    assert "SHUTTING_DOWN" in status.stdout
    both = await cli(live, "down", "one", "--all")
    assert both.exit_code == 1 and "not both" in both.stderr


async def test_logs_events_update_and_preempt(live: Live, tmp_path: Path) -> None:
    api = live.api
    await create(live, "svc")
    await launch_replica(api.store, "svc", 1)
    await synced(live)
    log = api.settings.replica_log("svc", 1)
    log.parent.mkdir(parents=True)
    log.write_text("hello from replica 1\n")
    comp = api.settings.component_log("scheduler")
    comp.parent.mkdir(parents=True, exist_ok=True)
    comp.write_text("scheduler started\nsvc: 1 replica wanted\nsvc2: 2 replicas wanted\n")

    logs = await cli(live, "logs", "svc", "1", "--no-follow")
    assert logs.exit_code == 0 and logs.stdout == "hello from replica 1\n"
    ctrl = await cli(live, "logs", "svc", "--controller", "--no-follow")  # the service's lines only
    assert ctrl.exit_code == 0 and ctrl.stdout == "svc: 1 replica wanted\n"
    component = await cli(live, "logs", "--component", "scheduler", "--no-follow")
    assert component.exit_code == 0 and component.stdout.startswith("scheduler started\n")

    events = await cli(live, "events", "--service", "svc", "--type", "ServiceRequested", "--json")
    assert events.exit_code == 0 and '"type": "ServiceRequested"' in events.stdout
    assert len(events.stdout.splitlines()) == 1
    table = await cli(live, "events", "-n", "2")
    assert table.exit_code == 0
    rows = table.stdout.splitlines()[1:]
    assert [line.split()[4] for line in rows] == ["ReplicaLaunched", "ReplicaReady"]
    paged = await cli(live, "events", "--after", "0", "-n", "2")
    rows = paged.stdout.splitlines()[1:]
    assert [line.split()[4] for line in rows] == ["ServiceRequested", "ReplicaScheduled"]
    bad_type = await cli(live, "events", "--type", "Nope")
    assert bad_type.exit_code == 1 and "unknown event type 'Nope'" in bad_type.stderr

    path = spec_file(tmp_path, SERVICE_YAML.replace("replicas: 2", "replicas: 3"))
    upd = await cli(live, "update", "svc", str(path), "--mode", "blue_green", "-y", "--async")
    assert upd.exit_code == 0, upd.output
    assert "Update of 'svc' to version 2 requested (blue_green)." in upd.stdout
    last = (await api.store.read_stream(service_stream("svc")))[-1].event
    assert isinstance(last, ServiceUpdateRequested) and last.mode == "blue_green"

    pre = await cli(live, "debug", "preempt", "svc", "1")
    assert pre.exit_code == 0, pre.output
    last_replica = (await api.store.read_stream(replica_stream("svc", 1)))[-1].event
    assert last_replica == PreemptionRequested(service="svc", replica_id=1, principal="local-admin#1")


@pytest.mark.parametrize("args", [["down"], ["status", "--endpoint"], ["logs"]])
def test_usage_errors_exit_non_zero(args: list[str]) -> None:
    result = runner.invoke(app, ["--api-url", "http://127.0.0.1:9", *args])
    assert result.exit_code == 1 and result.stderr.startswith("error: ")


async def test_events_table_has_a_header_and_whole_payloads(live: Live) -> None:
    long_run = "echo " + "x" * 400 + " && python -m http.server 8080"
    await create(live, "wide", SERVICE_YAML.replace("run: python -m http.server 8080", f"run: {long_run}"))
    table = await cli(live, "events", "--service", "wide", "--type", "ServiceRequested")
    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()
    assert header.split() == ["POSITION", "TIME", "(UTC)", "SERVICE", "TYPE", "BY", "DATA"]
    assert "..." not in row and long_run in row
    assert row[header.index("BY") :].split()[0] == "local-admin#1"  # who asked (audit)
    data = json.loads(row[header.index("DATA") :])
    assert data["spec"]["run"] == long_run


def test_logs_help_and_the_api_error_name_the_same_components() -> None:
    result = runner.invoke(app, ["logs", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    for name in COMPONENTS:
        assert re.search(rf"\b{name}\b", result.stdout), name


async def test_unknown_component_error_lists_what_help_lists(live: Live) -> None:
    result = await cli(live, "logs", "--component", "kernel", "--no-follow")
    assert result.exit_code == 1
    listed = result.stderr.split("components: ", 1)[1].strip().split(", ")
    assert tuple(listed) == COMPONENTS


def test_up_and_update_share_one_set_of_override_options() -> None:
    """The override flags are declared once (``with_overrides``): the same flags, help and order in
    ``up`` and ``update``, built into one ``TaskOverrides`` for the command."""
    import typer
    import typer.main

    def options(name: str) -> list[tuple[str, ...]]:
        command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
        return [(*p.opts, *p.secondary_opts, p.help or "") for p in command.params if p.name in NAMES]

    NAMES = {
        "env",
        "cloud",
        "region",
        "zone",
        "gpus",
        "cpus",
        "memory",
        "use_spot",
        "ports",
        "env_file",
        "secret",
    }
    assert options("up") == options("update") and len(options("up")) == len(NAMES)

    got: list[TaskOverrides] = []
    probe = typer.Typer()

    def deploy(file: str, *, task: TaskOverrides, yes: bool = False) -> None:
        got.append(task)

    probe.command()(with_overrides(deploy))
    result = runner.invoke(
        probe, ["f.yaml", "--gpus", "A100:2", "--ports", "8080", "--no-use-spot", "--env", "A=1"]
    )
    assert result.exit_code == 0, result.output
    (task,) = got
    assert (task.gpus, task.ports, task.use_spot, task.env, task.cloud) == (
        "A100:2",
        ["8080"],
        False,
        ["A=1"],
        None,
    )
    assert task.resources["accelerators"] == "A100:2" and task.resources["ports"] == [8080]
