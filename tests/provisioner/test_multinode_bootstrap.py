"""Multi-node bootstrap tokens against a real Postgres: one token per node, none answered before
the provisioner recorded every node's IP (and none used up by asking), then each node's answer
carries its rank and the IPs, each token still once; and the node script's pure parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from libs.bootstrap import (
    ClusterNotReady,
    TokenExpired,
    TokenUsed,
    cluster_ready,
    issue,
    log_token_for,
    redeem,
    set_node_ips,
)
from services.provisioner.clouds.base import Bootstrap, LaunchTask
from services.provisioner.clouds.errors import LaunchError
from services.provisioner.clouds.startup import render_startup_script
from services.provisioner.clouds.startup_fetch import node_env

IPS = ["172.31.0.10", "172.31.0.11", "172.31.0.12"]


@pytest.fixture
async def pool(fresh_db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(fresh_db_url, min_size=1, max_size=4)
    try:
        yield p
    finally:
        await p.close()


@pytest.mark.parametrize(
    ("num_nodes", "ips", "ready"),
    [
        (1, None, True),
        (2, None, False),
        (2, ["10.0.0.1"], False),
        (2, ["10.0.0.1", "10.0.0.2"], True),
        (3, ["10.0.0.1", "10.0.0.2"], False),
    ],
)
def test_cluster_ready(num_nodes: int, ips: list[str] | None, ready: bool) -> None:
    assert cluster_ready(num_nodes, ips) is ready


async def test_nodes_wait_for_the_ips_then_each_redeems_its_own_token_once(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    tokens = [await issue(pool, "svc", 3, 2, tmp_path, node_rank=r, num_nodes=3, now=1e3) for r in range(3)]
    assert len({t.token for t in tokens}) == 3
    # Before the provisioner knows the addresses: retry, and the token is not used up by asking.
    for _ in range(2):
        with pytest.raises(ClusterNotReady, match="node 1 of 3"):
            await redeem(pool, tokens[1].token, tmp_path, request_id="node-1", now=1001.0)
    assert await set_node_ips(pool, "svc", 3, 2, IPS, now=1002.0) == 3
    for rank, issued in enumerate(tokens):
        got = await redeem(pool, issued.token, tmp_path, request_id=f"node-{rank}", now=1003.0)
        assert (got.service, got.replica_id, got.version) == ("svc", 3, 2)
        assert (got.node_rank, got.num_nodes, got.node_ips) == (rank, 3, tuple(IPS))
        assert got.log_token == issued.log_token
    # Each node's token works once: someone else holding it later finds it used...
    with pytest.raises(TokenUsed):
        await redeem(pool, tokens[2].token, tmp_path, request_id="someone-else", now=1004.0)
    # ...while the node whose answer got lost fetches the same answer again.
    again = await redeem(pool, tokens[2].token, tmp_path, request_id="node-2", now=1004.0)
    assert (again.node_rank, again.node_ips) == (2, tuple(IPS))
    # The control plane reads the head's log: its log token, though the workers' were issued later.
    assert await log_token_for(pool, "svc", 3, tmp_path) == tokens[0].log_token


async def test_the_ips_go_to_this_replica_launch_only(pool: asyncpg.Pool, tmp_path: Path) -> None:
    mine = await issue(pool, "svc", 1, 1, tmp_path, node_rank=1, num_nodes=2, ttl=60, now=1000.0)
    other_replica = await issue(pool, "svc", 2, 1, tmp_path, node_rank=1, num_nodes=2, now=1000.0)
    other_version = await issue(pool, "svc", 1, 2, tmp_path, node_rank=1, num_nodes=2, now=1000.0)
    expired = await issue(pool, "svc", 1, 1, tmp_path, node_rank=0, num_nodes=2, ttl=5, now=900.0)
    single = await issue(pool, "svc", 1, 1, tmp_path, now=1000.0)
    assert await set_node_ips(pool, "svc", 1, 1, IPS[:2], now=1001.0) == 1
    assert (await redeem(pool, mine.token, tmp_path, now=1002.0)).node_ips == tuple(IPS[:2])
    for waiting in (other_replica, other_version):
        with pytest.raises(ClusterNotReady):
            await redeem(pool, waiting.token, tmp_path, now=1002.0)
    with pytest.raises(TokenExpired):  # expiry first: a dead token says so, not "retry"
        await redeem(pool, expired.token, tmp_path, now=1002.0)
    plain = await redeem(pool, single.token, tmp_path, now=1002.0)
    assert (plain.node_rank, plain.num_nodes, plain.node_ips) == (0, 1, ())


async def test_bad_ranks_and_ips_are_refused(pool: asyncpg.Pool, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rank 2 outside"):
        await issue(pool, "svc", 1, 1, tmp_path, node_rank=2, num_nodes=2)
    with pytest.raises(ValueError, match="not an IP"):
        await set_node_ips(pool, "svc", 1, 1, ["10.0.0.1", "10.0.0.2\nexport X=1"])
    with pytest.raises(ValueError, match="at least 2"):
        await set_node_ips(pool, "svc", 1, 1, ["10.0.0.1"])


def node_task(**kw: object) -> LaunchTask:
    boots = [Bootstrap(url="https://203.0.113.1/v1/bootstrap", token=f"tok-{r}") for r in range(2)]
    fields: dict[str, object] = {
        "service": "svc", "replica_id": 1, "service_port": 8080, "run": "serve", "num_nodes": 2,
        "bootstrap": boots[0], "node_bootstraps": boots,
    }  # fmt: skip
    fields.update(kw)
    return LaunchTask(**fields)  # type: ignore[arg-type]


def test_each_node_script_carries_its_own_token_and_rank() -> None:
    task = node_task()
    head, worker = (render_startup_script(task.for_node(r), cloud="aws") for r in range(2))
    assert "tok-0" in head and "tok-1" not in head
    assert "tok-1" in worker and "tok-0" not in worker
    assert "export SKYPILOT_NODE_RANK=1\n" in worker and "export SKYPILOT_NUM_NODES=2\n" in worker
    assert "node 1 of 2" in worker
    assert '[ -f "$STRATUS_ROOT/node.env" ] && . "$STRATUS_ROOT/node.env"' in worker
    assert "[ ! -s node.env ]" in worker  # the fetch runs again until the node file is written
    single = render_startup_script(node_task(num_nodes=1, node_bootstraps=[]), cloud="aws")
    assert "export SKYPILOT_NODE_RANK=0\n" in single and "[ ! -s node.env ]" not in single
    with pytest.raises(LaunchError, match="no bootstrap token"):
        render_startup_script(node_task(bootstrap=None, node_bootstraps=[]).for_node(1))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"envs": {}}, ""),
        ({"node_rank": 0, "num_nodes": 1, "node_ips": []}, ""),
        (
            {"node_rank": 1, "num_nodes": 2, "node_ips": ["10.0.0.1", "10.0.0.2"]},
            "export SKYPILOT_NODE_RANK='1'\nexport SKYPILOT_NUM_NODES='2'\n"
            "export SKYPILOT_NODE_IPS='10.0.0.1\n10.0.0.2'\n",
        ),
        ({"node_rank": 0, "num_nodes": 2, "node_ips": ["10.0.0.1"]}, None),
        ({"node_rank": 2, "num_nodes": 2, "node_ips": ["10.0.0.1", "10.0.0.2"]}, None),
        ({"node_rank": 0, "num_nodes": 2, "node_ips": ["10.0.0.1", "$(reboot)"]}, None),
        ({"node_rank": 0, "num_nodes": 2, "node_ips": "10.0.0.1"}, None),
    ],
)
def test_node_env(answer: dict[str, object], expected: str | None) -> None:
    assert node_env(answer) == expected
