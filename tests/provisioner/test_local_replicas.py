"""The local provider against real processes, namespaces and sockets.

Tests marked with the ``mode`` fixture run once per isolation mode available here (netns as
root, userns wherever unprivileged user namespaces work); ``any_mode`` ones run once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from libs.events.types import Placement
from services.provisioner.clouds.base import InstanceState, LaunchTask
from services.provisioner.clouds.errors import InstanceNotFound, LaunchError
from services.provisioner.clouds.local_netns import netns_names
from services.provisioner.clouds.local_probe import find_ip_binary
from services.provisioner.clouds.local_records import Mode

from .conftest import MakeProvider
from .helpers import (
    eventually,
    exists,
    get_when_up,
    gone,
    link_exists,
    marked_processes,
    netns_exists,
    status_becomes,
)

pytestmark = pytest.mark.timeout(60)

PLACEMENT = Placement(cloud="local", region="local")
PY = sys.executable  # not the `python3` of PATH: a pyenv shim costs a process and time
# Workloads end by themselves after a while: even a test run killed before its cleanup
# leaves nothing running for long.
SERVE = f"exec timeout 300 {PY} -m http.server 8080"


def make_task(replica_id: int = 1, **fields: Any) -> LaunchTask:
    return LaunchTask(service="svc", replica_id=replica_id, service_port=8080, **fields)


async def files_appear(directory: Path, *names: str, within: float = 10.0) -> None:
    async def present() -> bool:
        return all((directory / n).exists() and (directory / n).read_text().strip() for n in names)

    assert await eventually(present, bool, within=within), f"{names} not written in {directory}"


async def test_two_replicas_listen_on_the_same_port(
    make_provider: MakeProvider, mode: Mode, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello from the workdir\n")
    provider = make_provider(mode)
    run = "echo $SKYPILOT_SERVE_REPLICA_ID > replica.txt\nexec timeout 300 python3 -m http.server 8080\n"

    first = await provider.launch(PLACEMENT, make_task(1, run=run, workdir=str(site)))
    second = await provider.launch(PLACEMENT, make_task(2, run=run, workdir=str(site)))

    assert first.url != second.url
    scheme = "http://10.213." if mode == "netns" else "http+unix://"
    assert first.url.startswith(scheme) and second.url.startswith(scheme)
    for instance, replica_id in ((first, 1), (second, 2)):
        assert (await get_when_up(instance.url, "/index.html")).text == "hello from the workdir\n"
        assert (await get_when_up(instance.url, "/replica.txt")).text.strip() == str(replica_id)
        assert (await provider.status(instance.instance_id)).state is InstanceState.RUNNING
        assert instance.placement == PLACEMENT and instance.service == "svc"
    assert not (site / "replica.txt").exists()  # each replica works on its own copy


async def test_envs_and_skypilot_variables_reach_setup_and_run(
    make_provider: MakeProvider, mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUS_TEST_PROVISIONER_ONLY", "not for replicas")
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    provider = make_provider(mode)
    names = [
        "GREETING", "SKYPILOT_NUM_GPUS_PER_NODE", "SKYPILOT_SERVE_REPLICA_ID", "STRATUS_NUM_GPUS_PER_NODE",
        "STRATUS_REPLICA_ID", "STRATUS_SERVICE_NAME", "STRATUS_SERVICE_VERSION", "SKYPILOT_NUM_NODES",
        "SKYPILOT_NODE_RANK", "STRATUS_TEST_PROVISIONER_ONLY",
    ]  # fmt: skip
    run = "".join(f'echo "{n}=${n}" >> env.txt\n' for n in names)
    run += 'echo "API_KEY_LENGTH=${#API_KEY}" >> env.txt\necho "PWD=$PWD" >> env.txt\n'
    task = make_task(
        3, setup='echo "SETUP_SAW=$GREETING" > setup.txt', run=run, num_gpus=2, version=4,
        envs={"GREETING": "hello world", "API_KEY": secret},
    )  # fmt: skip

    instance = await provider.launch(PLACEMENT, task)
    status = await status_becomes(provider, instance.instance_id, InstanceState.EXITED)

    assert status.exit_code == 0, provider.log_tail(instance.instance_id)
    workdir = Path(instance.details["workdir"])
    seen = dict(line.split("=", 1) for line in (workdir / "env.txt").read_text().splitlines())
    assert seen == {
        "GREETING": "hello world",
        "SKYPILOT_NUM_GPUS_PER_NODE": "2",
        "SKYPILOT_SERVE_REPLICA_ID": "3",
        "STRATUS_NUM_GPUS_PER_NODE": "2",
        "STRATUS_REPLICA_ID": "3",
        "STRATUS_SERVICE_NAME": "svc",
        "STRATUS_SERVICE_VERSION": "4",
        "SKYPILOT_NUM_NODES": "1",
        "SKYPILOT_NODE_RANK": "0",
        "STRATUS_TEST_PROVISIONER_ONLY": "",  # the provisioner's own environment stays its own
        "API_KEY_LENGTH": str(len(secret)),
        "PWD": str(workdir),
    }
    assert (workdir / "setup.txt").read_text() == "SETUP_SAW=hello world\n"
    # The secret is in no file the provider wrote (records, launch config, scripts, log).
    for path in provider.state_dir.rglob("*"):
        if path.is_file() and workdir not in path.parents:
            assert secret not in path.read_text(errors="replace"), path


async def test_setup_failure_fails_the_replica_without_running_run(
    make_provider: MakeProvider, any_mode: Mode
) -> None:
    provider = make_provider(any_mode)
    task = make_task(setup="echo preparing the model\nfalse\necho but carrying on\nexit 3", run="touch ran")

    instance = await provider.launch(PLACEMENT, task)
    status = await status_becomes(provider, instance.instance_id, InstanceState.EXITED)

    assert status.exit_code == 3
    assert "setup exited with code 3" in status.detail
    assert not (Path(instance.details["workdir"]) / "ran").exists()
    log = provider.log_tail(instance.instance_id, lines=50)
    # No implicit `set -e`: as in SkyPilot, the script's own exit status decides.
    assert "preparing the model" in log and "but carrying on" in log
    assert "===== setup started =====" in log and "===== setup exited with code 3 =====" in log
    assert "run started" not in log

    await provider.terminate(instance.instance_id)
    assert (await provider.status(instance.instance_id)).state is InstanceState.TERMINATED
    log_path = provider.log_path(instance.instance_id)
    assert log_path is not None and "preparing the model" in log_path.read_text()
    assert log_path == provider.state_dir / "logs" / "svc" / "replica-1.log"


async def test_a_run_that_exits_at_once_is_seen_as_exited(
    make_provider: MakeProvider, any_mode: Mode
) -> None:
    provider = make_provider(any_mode)

    failed = await provider.launch(PLACEMENT, make_task(1, run="echo bye; exit 7"))
    done = await provider.launch(PLACEMENT, make_task(2, run="true"))

    status = await status_becomes(provider, failed.instance_id, InstanceState.EXITED)
    assert (status.exit_code, status.detail) == (7, "run exited with code 7")
    assert (await status_becomes(provider, done.instance_id, InstanceState.EXITED)).exit_code == 0
    assert provider.log_tail(failed.instance_id, lines=2).splitlines()[0].endswith("bye")
    # Still listed (the provisioner must see it exited and clean up) until terminated.
    assert {i.instance_id for i in await provider.list_instances("svc")} == {
        failed.instance_id,
        done.instance_id,
    }


async def test_status_is_provisioning_during_setup_then_running(
    make_provider: MakeProvider, any_mode: Mode
) -> None:
    provider = make_provider(any_mode)
    setup = "for i in $(seq 200); do [ -f go ] && exit 0; sleep 0.05; done; exit 1"
    instance = await provider.launch(PLACEMENT, make_task(setup=setup, run="exec sleep 300"))

    assert (await provider.status(instance.instance_id)).state is InstanceState.PROVISIONING
    (Path(instance.details["workdir"]) / "go").write_text("go")
    await status_becomes(provider, instance.instance_id, InstanceState.RUNNING)


async def test_terminate_stops_the_whole_process_tree(make_provider: MakeProvider, mode: Mode) -> None:
    provider = make_provider(mode)
    run = """
setsid -f sh -c 'echo $$ > orphan.pid; exec sleep 300'
setsid -f env -i sh -c 'echo $$ > bare.pid; exec sleep 300'
sh -c 'trap "" TERM; echo $$ > stubborn.pid; for i in $(seq 3000); do sleep 0.1; done' &
trap '' TERM
echo ready > ready
wait
"""
    instance = await provider.launch(PLACEMENT, make_task(run=run))
    workdir = Path(instance.details["workdir"])
    await files_appear(workdir, "orphan.pid", "bare.pid", "stubborn.pid", "ready")
    # orphan: left the session and was re-parented; bare: also cleared its environment, so
    # only its network namespace gives it away; stubborn (and bash itself) ignore SIGTERM.
    named = {name: int((workdir / f"{name}.pid").read_text()) for name in ("orphan", "bare", "stubborn")}
    launcher = int(instance.details["pid"])
    assert os.getsid(named["orphan"]) != launcher and os.getsid(named["bare"]) != launcher
    assert launcher not in {p.pid for p in psutil.Process(named["orphan"]).parents()}
    pids = {*named.values(), launcher, *(p.pid for p in marked_processes(instance.instance_id))}

    started = time.monotonic()
    await provider.terminate(instance.instance_id, grace_seconds=1)
    elapsed = time.monotonic() - started

    assert 1 <= elapsed < 10  # the grace period was waited out, then SIGKILL
    assert [pid for pid in pids if not gone(pid)] == []
    assert marked_processes(instance.instance_id) == []
    assert (await provider.status(instance.instance_id)).state is InstanceState.TERMINATED
    assert not exists(workdir)
    if mode == "netns":
        assert not netns_exists(instance.details["netns"]) and not link_exists(instance.details["veth"])
    else:
        assert not exists(instance.details["socket"])
    await provider.terminate(instance.instance_id)  # idempotent


_CONTROLLER = """
import asyncio, sys
from pathlib import Path
from libs.events.types import Placement
from services.provisioner.clouds.base import LaunchTask
from services.provisioner.clouds.local import LocalProvider

async def main() -> None:
    provider = LocalProvider(Path(sys.argv[1]), isolation=sys.argv[2])
    task = LaunchTask(service="svc", replica_id=1, service_port=8080, run=sys.argv[3])
    instance = await provider.launch(Placement(), task)
    print(instance.instance_id, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_a_killed_controller_leaves_replicas_that_a_new_provider_rediscovers(
    make_provider: MakeProvider, mode: Mode, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    run = "echo survivor > index.html\n" + SERVE
    controller = await asyncio.create_subprocess_exec(
        PY, "-c", _CONTROLLER, str(state_dir), mode, run, stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert controller.stdout is not None
        instance_id = (await asyncio.wait_for(controller.stdout.readline(), 30)).decode().strip()
    finally:
        os.killpg(controller.pid, signal.SIGKILL)  # the controller and everything in its group
        await controller.wait()

    provider = make_provider(mode, state_dir=state_dir)
    (instance,) = await provider.list_instances()
    assert instance.instance_id == instance_id
    assert (await get_when_up(instance.url, "/index.html")).text == "survivor\n"
    assert (await provider.status(instance_id)).state is InstanceState.RUNNING

    await provider.terminate(instance_id, grace_seconds=2)
    assert marked_processes(instance_id) == []
    assert (await provider.status(instance_id)).state is InstanceState.TERMINATED
    assert await provider.list_instances() == []


async def test_preempt_stops_the_workload_and_reports_preempted(
    make_provider: MakeProvider, mode: Mode
) -> None:
    provider = make_provider(mode)
    instance = await provider.launch(PLACEMENT, make_task(run=SERVE))
    await get_when_up(instance.url)
    launcher = int(instance.details["pid"])

    await provider.preempt(instance.instance_id, grace_seconds=2)

    status = await provider.status(instance.instance_id)
    assert status.state is InstanceState.PREEMPTED
    assert gone(launcher) and marked_processes(instance.instance_id) == []
    if mode == "netns":
        assert not netns_exists(instance.details["netns"])
    await provider.preempt(instance.instance_id)  # idempotent
    assert [i.instance_id for i in await provider.list_instances()] == [instance.instance_id]

    await provider.terminate(instance.instance_id)
    assert (await provider.status(instance.instance_id)).state is InstanceState.TERMINATED
    with pytest.raises(InstanceNotFound):
        await provider.preempt(instance.instance_id)


async def test_a_redelivered_launch_returns_the_running_instance(
    make_provider: MakeProvider, any_mode: Mode
) -> None:
    provider = make_provider(any_mode)
    task = make_task(run="exec sleep 300")

    first = await provider.launch(PLACEMENT, task)
    again = await provider.launch(PLACEMENT, task)

    assert again == first
    assert len([p for p in marked_processes(first.instance_id) if p.name() == "sleep"]) == 1


async def test_a_relaunch_after_the_replica_exited_starts_afresh(
    make_provider: MakeProvider, any_mode: Mode
) -> None:
    provider = make_provider(any_mode)
    first = await provider.launch(PLACEMENT, make_task(run="exit 2"))
    await status_becomes(provider, first.instance_id, InstanceState.EXITED)

    second = await provider.launch(PLACEMENT, make_task(run="exec sleep 300"))

    assert second.instance_id != first.instance_id
    assert (await provider.status(first.instance_id)).state is InstanceState.NOT_FOUND
    await status_becomes(provider, second.instance_id, InstanceState.RUNNING)
    log = provider.log_tail(second.instance_id, lines=20)
    assert "run exited with code 2" in log and f"instance {second.instance_id} started" in log


async def test_unknown_instances(make_provider: MakeProvider) -> None:
    provider = make_provider()
    for unknown in ("nope", "svc-1-deadbeef", "../../etc-1-deadbeef"):
        assert (await provider.status(unknown)).state is InstanceState.NOT_FOUND
        await provider.terminate(unknown)  # nothing to do is not an error
        assert provider.log_path(unknown) is None and provider.log_tail(unknown) == ""
        with pytest.raises(InstanceNotFound):
            await provider.preempt(unknown)
    assert await provider.list_instances() == []


async def test_a_launcher_killed_from_outside_is_exited_without_a_code(
    make_provider: MakeProvider, any_mode: Mode
) -> None:
    provider = make_provider(any_mode)
    instance = await provider.launch(PLACEMENT, make_task(run="exec sleep 300"))
    await status_becomes(provider, instance.instance_id, InstanceState.RUNNING)

    os.kill(int(instance.details["pid"]), signal.SIGKILL)

    status = await status_becomes(provider, instance.instance_id, InstanceState.EXITED)
    assert status.exit_code is None and "without recording an exit code" in status.detail
    # Its `sleep` lives on, orphaned; terminate still finds it by its marker.
    await provider.terminate(instance.instance_id, grace_seconds=1)
    assert marked_processes(instance.instance_id) == []


async def test_workdir_and_file_mounts_are_copied(
    make_provider: MakeProvider, any_mode: Mode, tmp_path: Path
) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "serve.sh").write_text("echo app\n")
    (tmp_path / "model.json").write_text('{"layers": 2}')
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a")
    provider = make_provider(any_mode)
    task = make_task(
        workdir=str(tmp_path / "app"),
        file_mounts={str(tmp_path / "model.json"): "conf/model.json", str(tmp_path / "data"): "~/data"},
        run="bash serve.sh > out.txt; cat conf/model.json >> out.txt; ls data >> out.txt; rm serve.sh",
    )

    instance = await provider.launch(PLACEMENT, task)
    assert (await status_becomes(provider, instance.instance_id, InstanceState.EXITED)).exit_code == 0

    assert (Path(instance.details["workdir"]) / "out.txt").read_text() == 'app\n{"layers": 2}a.txt\n'
    assert (tmp_path / "app" / "serve.sh").exists()  # the replica changed only its copy


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"file_mounts": {"s3://bucket/model": "model"}}, "is remote"),
        ({"file_mounts": {"/etc/hostname": "/data/hostname"}}, "must be relative or under ~/"),
        ({"file_mounts": {"relative/path": "x"}}, "is relative"),
        ({"workdir": "gs://bucket/app"}, "is remote"),
    ],
)
async def test_file_mounts_the_local_provider_cannot_honour_are_rejected(
    make_provider: MakeProvider, fields: dict[str, Any], message: str
) -> None:
    provider = make_provider()
    with pytest.raises(LaunchError, match=message):
        await provider.launch(PLACEMENT, make_task(run="true", **fields))
    assert not (provider.state_dir / "replicas").exists()  # rejected before anything was made


async def test_a_failed_launch_cleans_up_after_itself(
    make_provider: MakeProvider, any_mode: Mode, tmp_path: Path
) -> None:
    provider = make_provider(any_mode)
    with pytest.raises(LaunchError, match="does not exist"):
        await provider.launch(PLACEMENT, make_task(run="true", file_mounts={str(tmp_path / "missing"): "m"}))
    assert await provider.list_instances() == []
    log = (provider.state_dir / "logs" / "svc" / "replica-1.log").read_text()
    assert "failed" in log and "does not exist" in log
    # make_provider's teardown checks that no namespace or veth was left behind.


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run([find_ip_binary() or "ip", *args], check=check, timeout=10, capture_output=True)


async def test_a_stale_namespace_and_veth_of_the_same_name_are_replaced(
    make_provider: MakeProvider, unavailable_modes: dict[str, str | None]
) -> None:
    if unavailable_modes["netns"] is not None:
        pytest.skip(f"netns isolation unavailable here: {unavailable_modes['netns']}")
    provider = make_provider("netns")
    names = netns_names(provider.state_dir, "svc", 1)
    # What a crashed run leaves: the namespace, and a veth pair still in the host namespace.
    _ip("netns", "add", names.netns)
    _ip("link", "add", names.veth_host, "type", "veth", "peer", "name", names.veth_ns)
    launched = False
    try:
        instance = await provider.launch(PLACEMENT, make_task(run=SERVE))
        launched = True
        assert instance.details["netns"] == names.netns
        assert (await get_when_up(instance.url)).status_code == 200
    finally:
        if not launched:  # else the provider owns them now, and make_provider checks they go
            _ip("netns", "del", names.netns, check=False)
            _ip("link", "del", names.veth_host, check=False)


async def test_a_deep_state_dir_puts_bridge_sockets_in_a_private_runtime_dir(
    make_provider: MakeProvider,
    unavailable_modes: dict[str, str | None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if unavailable_modes["userns"] is not None:
        pytest.skip(f"userns isolation unavailable here: {unavailable_modes['userns']}")
    runtime = tmp_path / "run"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # <state_dir>/sockets/... would pass sun_path's 108
    provider = make_provider("userns", state_dir=deep)
    fallback = runtime / f"stratus-{os.geteuid()}"
    fallback.mkdir(mode=0o755)
    fallback.chmod(0o755)

    with pytest.raises(LaunchError, match="holds replica sockets"):  # someone else could use it
        await provider.launch(PLACEMENT, make_task(run="true"))

    fallback.chmod(0o700)
    instance = await provider.launch(PLACEMENT, make_task(run=SERVE))
    assert Path(instance.details["socket"]).parent == fallback
    assert (await get_when_up(instance.url)).status_code == 200
