"""Multi-node local replicas (``num_nodes > 1``): the env each node gets, and real 2-node replicas
in netns mode (a namespace per node, joined by the replica's bridge)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from libs.events.types import Placement
from services.provisioner.clouds.base import InstanceState, LaunchTask
from services.provisioner.clouds.errors import LaunchError
from services.provisioner.clouds.local_env import platform_env, replica_env
from services.provisioner.clouds.local_nodes import (
    check_num_nodes,
    cluster_commands,
    cluster_ips,
    failed_worker,
)
from services.provisioner.clouds.local_records import NodeRecord, load_record

from .conftest import MakeProvider
from .helpers import eventually, get_when_up, gone, marked_processes, netns_exists, status_becomes

pytestmark = pytest.mark.timeout(60)

PLACEMENT = Placement(cloud="local", region="local")
PY = sys.executable
# Every node serves on 8080 in its own namespace; the head first fetches from each worker over the
# nodes' bridge (the address SKYPILOT_NODE_IPS gives), as a distributed program reaches its peers.
RUN = f"""echo "rank=$SKYPILOT_NODE_RANK nodes=$SKYPILOT_NUM_NODES gpus=$SKYPILOT_NUM_GPUS_PER_NODE"
echo "ips=$(echo "$SKYPILOT_NODE_IPS" | paste -sd,)"
if [ "$SKYPILOT_NODE_RANK" = 0 ]; then
  for ip in $(echo "$SKYPILOT_NODE_IPS" | tail -n +2); do
    timeout 20 {PY} -c "
import sys, time, urllib.request
for _ in range(400):
    try:
        urllib.request.urlopen('http://$ip:8080/', timeout=1); print('reached', '$ip'); break
    except OSError: time.sleep(0.05)
"
  done
fi
exec timeout 300 {PY} -m http.server 8080
"""


def task(num_nodes: int = 2, **fields: object) -> LaunchTask:
    return LaunchTask(
        service="multi", replica_id=1, service_port=8080, run=RUN, num_nodes=num_nodes, num_gpus=4,
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip


# --------------------------------------------------------------------------- pure


def test_each_node_gets_its_rank_and_every_ip_head_first() -> None:
    ips = cluster_ips(3)
    assert ips == ["192.168.213.1", "192.168.213.2", "192.168.213.3"]
    envs = [
        platform_env(task(3), instance_id="i", node_ip="10.0.0.2", rank=r, node_ips=ips) for r in range(3)
    ]
    assert [e["SKYPILOT_NODE_RANK"] for e in envs] == ["0", "1", "2"]
    assert {e["SKYPILOT_NODE_IPS"] for e in envs} == {"192.168.213.1\n192.168.213.2\n192.168.213.3"}
    assert {e["SKYPILOT_NUM_NODES"] for e in envs} == {"3"}
    assert {e["SKYPILOT_NUM_GPUS_PER_NODE"] for e in envs} == {"4"}


def test_one_node_keeps_its_own_address_and_the_platform_wins_over_task_envs() -> None:
    one = platform_env(task(1), instance_id="i", node_ip="10.0.0.2")
    assert (one["SKYPILOT_NODE_RANK"], one["SKYPILOT_NUM_NODES"], one["SKYPILOT_NODE_IPS"]) == (
        "0",
        "1",
        "10.0.0.2",
    )
    env = replica_env(
        {},
        task(2, envs={"SKYPILOT_NODE_RANK": "7"}),
        instance_id="i",
        node_ip="x",
        rank=1,
        node_ips=cluster_ips(2),
    )
    assert env["SKYPILOT_NODE_RANK"] == "1"


def test_the_bridge_joins_every_worker_to_the_head() -> None:
    workers = [NodeRecord(rank=1, netns="w1"), NodeRecord(rank=2, netns="w2")]
    argvs = [" ".join(a) for a in cluster_commands("ip", "head", workers)]
    assert "ip -n head addr add 192.168.213.1/24 dev stcluster" in argvs
    assert "ip -n w2 addr add 192.168.213.3/24 dev stnode" in argvs
    assert "ip -n head link set stport1 master stcluster" in argvs


def test_a_worker_failing_fails_the_replica_but_one_that_finished_does_not() -> None:
    workers = [NodeRecord(rank=1), NodeRecord(rank=2)]
    assert failed_worker(workers, [True, True], [None, None]) is None
    assert failed_worker(workers, [False, True], [0, None]) is None
    assert "node 2 of 3 exited with code 3" in (failed_worker(workers, [True, False], [None, 3]) or "")
    assert "node 1 of 3 died" in (failed_worker(workers, [False, True], [None, None]) or "")


def test_userns_mode_refuses_several_nodes() -> None:
    check_num_nodes(1, "userns")
    check_num_nodes(2, "netns")
    with pytest.raises(LaunchError, match="netns mode"):
        check_num_nodes(2, "userns")


# --------------------------------------------------------------------------- real replicas


@pytest.fixture
def netns_only(unavailable_modes: dict[str, str | None]) -> None:
    if unavailable_modes["netns"] is not None:
        pytest.skip(f"multi-node local replicas need netns mode: {unavailable_modes['netns']}")


def _log(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.usefixtures("netns_only")
async def test_two_nodes_run_with_their_env_reach_each_other_and_stop_together(
    make_provider: MakeProvider,
) -> None:
    provider = make_provider("netns")
    inst = await provider.launch(PLACEMENT, task())
    assert inst.details["nodes"] == "2" and inst.details["cluster_ip"] == "192.168.213.1"
    assert (await get_when_up(inst.url, within=30)).status_code == 200  # the head serves the replica
    head_log = Path(inst.details["log"])
    worker_log = head_log.with_name("replica-1-node-1.log")
    logs = await eventually(
        lambda: _aread(head_log, worker_log), lambda t: "reached" in t[0] and "ips=" in t[1], within=20
    )
    assert "rank=0 nodes=2 gpus=4" in logs[0] and "rank=1 nodes=2 gpus=4" in logs[1]
    assert "ips=192.168.213.1,192.168.213.2" in logs[0] and "ips=192.168.213.1,192.168.213.2" in logs[1]
    assert "reached 192.168.213.2" in logs[0]  # the head reached the worker over the bridge
    record = load_record(provider.state_dir / "replicas" / "multi-1" / "record.json")
    assert record is not None and len(record.workers) == 1
    worker = record.workers[0]
    assert worker.ns_ip != record.ns_ip and netns_exists(worker.netns)
    assert (await provider.status(inst.instance_id)).state == InstanceState.RUNNING
    pids = [p.pid for p in marked_processes(inst.instance_id)]
    assert worker.pid in pids and record.pid in pids

    await provider.terminate(inst.instance_id, grace_seconds=1)
    assert marked_processes(inst.instance_id) == [] and all(gone(p) for p in pids)
    assert not netns_exists(worker.netns) and not netns_exists(record.netns)


@pytest.mark.usefixtures("netns_only")
async def test_a_worker_dying_fails_the_replica_and_preempt_stops_every_node(
    make_provider: MakeProvider,
) -> None:
    provider = make_provider("netns")
    inst = await provider.launch(PLACEMENT, task())
    await get_when_up(inst.url, within=30)
    record = load_record(provider.state_dir / "replicas" / "multi-1" / "record.json")
    assert record is not None
    os.killpg(record.workers[0].pid, signal.SIGKILL)  # the worker's whole session, from outside
    status = await status_becomes(provider, inst.instance_id, InstanceState.EXITED, within=10)
    assert "node 1 of 2" in status.detail, status
    await provider.preempt(inst.instance_id, grace_seconds=1)
    assert (await provider.status(inst.instance_id)).state == InstanceState.PREEMPTED
    assert marked_processes(inst.instance_id) == []
    assert not netns_exists(record.workers[0].netns)
    await provider.terminate(inst.instance_id, grace_seconds=0)


async def _aread(*paths: Path) -> tuple[str, ...]:
    return tuple(_log(p) for p in paths)


def test_the_spec_check_knows_which_providers_launch_several_nodes() -> None:
    """``up`` refuses num_nodes > 1 from libs.spec's list; the providers say it themselves."""
    import importlib

    from libs.spec.launch import MULTI_NODE_CLOUDS, PROVIDERS
    from services.provisioner.clouds.local import LocalProvider
    from services.provisioner.clouds.registry import PROVIDER_CLASSES

    says = {"local": LocalProvider.multi_node}
    for cloud, (module, name) in PROVIDER_CLASSES.items():
        mod = importlib.import_module(f"services.provisioner.clouds.{module}")
        says[cloud] = getattr(mod, name).multi_node
    assert set(says) == set(PROVIDERS)
    assert sorted(c for c, yes in says.items() if yes) == sorted(MULTI_NODE_CLOUDS)
