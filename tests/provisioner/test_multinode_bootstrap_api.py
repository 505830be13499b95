"""``POST /v1/bootstrap`` for a multi-node replica over real HTTP (uvicorn on loopback): a node
asking before the IPs are recorded gets 503 with Retry-After, and the instance-side fetch program
waits it out and writes the node's rank and every node's IP for the runner."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx

from libs.bootstrap import issue, set_node_ips
from services.api.deps import ApiDeps
from tests.provisioner.test_startup_bootstrap_api import FETCH, api

__all__ = ["api"]  # the fixture: a real API server over the test's database

IPS = ["172.31.7.20", "172.31.7.21"]


async def test_a_node_waits_for_its_peers_then_gets_its_rank_and_their_ips(
    api: tuple[str, ApiDeps], tmp_path: Path
) -> None:
    url, deps = api
    pool, home = deps.store.pool, deps.settings.home
    head, worker = [await issue(pool, "svc", 4, 1, home, node_rank=r, num_nodes=2) for r in range(2)]

    async with httpx.AsyncClient(base_url=url) as http:
        early = await http.post("/v1/bootstrap", headers={"Authorization": f"Bearer {worker.token}"})
    assert early.status_code == 503, early.text
    assert early.headers["Retry-After"] == "5"
    body = early.json()
    assert body["error"] == "bootstrap_cluster_not_ready"
    assert "node 1 of 2" in body["message"] and "the token stays valid" in body["message"]

    # The worker's fetch program, started before the IPs exist: it waits (Retry-After), and
    # finishes once the provisioner records them.
    root = tmp_path / "worker"
    root.mkdir()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(FETCH), f"{url}/v1/bootstrap", str(root),
        env={"STRATUS_BOOTSTRAP_TOKEN": worker.token},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    first = await asyncio.wait_for(proc.stderr.readline(), 30)
    assert b"waiting for the other nodes" in first, first
    assert await set_node_ips(pool, "svc", 4, 1, IPS) == 2
    await asyncio.wait_for(proc.wait(), 60)
    rest = await proc.stderr.read()
    assert proc.returncode == 0, rest
    assert b"attempt" not in rest  # the wait was not counted as failed attempts

    sourced = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", f'. {root}/node.env && printf "%s|%s|%s" "$SKYPILOT_NODE_RANK" "$SKYPILOT_NUM_NODES" '
         '"$SKYPILOT_NODE_IPS"'],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert sourced.stdout == "1|2|172.31.7.20\n172.31.7.21"
    assert (root / "node.env").stat().st_mode & 0o077 == 0

    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/v1/bootstrap", headers={"Authorization": f"Bearer {head.token}"})
        assert answer.status_code == 200, answer.text
        assert {k: answer.json()[k] for k in ("node_rank", "num_nodes", "node_ips")} == {
            "node_rank": 0, "num_nodes": 2, "node_ips": IPS,
        }  # fmt: skip
        # Still one use per token: the worker's is gone now.
        again = await http.post("/v1/bootstrap", headers={"Authorization": f"Bearer {worker.token}"})
        assert again.status_code == 410


async def test_a_single_node_answer_has_no_peers(api: tuple[str, ApiDeps]) -> None:
    url, deps = api
    issued = await issue(deps.store.pool, "svc", 1, 1, deps.settings.home)
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/v1/bootstrap", headers={"Authorization": f"Bearer {issued.token}"})
    assert answer.status_code == 200
    assert {k: answer.json()[k] for k in ("node_rank", "num_nodes", "node_ips")} == {
        "node_rank": 0, "num_nodes": 1, "node_ips": [],
    }  # fmt: skip
