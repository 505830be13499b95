"""Bootstrap security: TLS off loopback, and a lost bootstrap answer retried instead of a failed boot.

The lost answers are real: a TCP proxy on loopback between the instance-side fetch program and the
real API (uvicorn) hands the first request to the API, which uses the token, and then drops the
connection (or holds it past the fetch's timeout) instead of passing the answer on.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from libs.bootstrap import BootstrapUrlError, TokenUsed, check_url, issue, refusal
from libs.bootstrap.tokens import MAX_REPLAYS, REPLAY_SECONDS
from libs.secrets import store_secrets
from services.api.deps import ApiDeps
from services.provisioner.clouds import startup_fetch
from services.provisioner.clouds.base import Bootstrap, LaunchTask
from services.provisioner.clouds.errors import LaunchError
from services.provisioner.clouds.startup import render_startup_script

from .test_startup_bootstrap_api import FETCH, api

__all__ = ["api"]
SECRET = "hf-lost-answer-secret"

# ------------------------------------------------------------------------------------ TLS


@pytest.mark.parametrize(
    "url",
    ["https://api.example.com/v1/bootstrap", "https://10.0.0.5:8765/v1/bootstrap",
     "http://127.0.0.1:8765/v1/bootstrap", "http://localhost/v1/bootstrap", "http://[::1]:1/v1/bootstrap"],
)  # fmt: skip
def test_https_anywhere_and_plain_http_on_loopback_are_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5:8765/v1/bootstrap", "http://api.example.com/v1/bootstrap", "ftp://x/v1", "nope"]
)
def test_plain_http_off_loopback_is_refused(url: str) -> None:
    with pytest.raises(BootstrapUrlError) as err:
        check_url(url)
    if url.startswith("http://"):
        assert "TLS is required off loopback" in str(err.value) and "https://" in str(err.value)


def test_a_startup_script_for_a_plain_http_bootstrap_url_is_not_rendered() -> None:
    task = LaunchTask(
        service="svc", replica_id=1, service_port=8080, run="serve",
        envs={"HF_TOKEN": SECRET}, secret_names=["HF_TOKEN"],
        bootstrap=Bootstrap(url="http://203.0.113.9:8765/v1/bootstrap", token="t"),
    )  # fmt: skip
    with pytest.raises(LaunchError, match="TLS is required off loopback"):
        render_startup_script(task, cloud="aws")


# ------------------------------------------------------------------------------------ replays


def test_a_used_token_is_answered_again_only_to_its_requester_bounded() -> None:
    used = 100.0
    assert refusal(used, 2000.0, used + 5, same_requester=True) is None
    assert refusal(used, 2000.0, used + 5) is TokenUsed  # anyone else
    assert refusal(used, 2000.0, used + REPLAY_SECONDS, same_requester=True) is TokenUsed
    assert refusal(used, 2000.0, used + 5, same_requester=True, replays=MAX_REPLAYS) is TokenUsed


class LossyProxy:
    """Loopback TCP proxy to ``upstream``; its first ``lose`` exchanges lose the answer."""

    def __init__(self, upstream: str, lose: int, mode: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.host, self.port, self.lose, self.mode = host, int(port), lose, mode
        self.exchanges = 0
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            body = await reader.readexactly(length)
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
            up_writer.write(head + body)
            await up_writer.drain()
            answer = await asyncio.wait_for(up_reader.read(), 10)  # urllib asks `Connection: close`
            up_writer.close()
            self.exchanges += 1
            if self.exchanges <= self.lose:
                if self.mode == "stall":  # until the client gives up waiting
                    await asyncio.wait_for(reader.read(), 10)
                return  # the answer is lost: the connection closes without it
            writer.write(answer)
            await writer.drain()
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[LossyProxy]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/bootstrap"
        async with server:
            yield self


async def secrets_for(deps: ApiDeps) -> str:
    pool, home = deps.store.pool, deps.settings.home
    async with pool.acquire() as conn, conn.transaction():
        await store_secrets(conn, "svc", 1, {"HF_TOKEN": SECRET}, home)
    return (await issue(pool, "svc", 1, 1, home)).token


async def test_a_dropped_answer_is_fetched_again_and_the_replica_boots(
    api: tuple[str, ApiDeps], tmp_path: Path
) -> None:
    url, deps = api
    token = await secrets_for(deps)
    async with LossyProxy(url, lose=1, mode="drop").serving() as proxy:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(FETCH), proxy.url, str(tmp_path)],
            env={"STRATUS_BOOTSTRAP_TOKEN": token}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert proxy.exchanges == 2  # the API answered twice: the first answer never arrived
    assert "bootstrap attempt 1/" in done.stderr and SECRET not in done.stderr + done.stdout
    assert SECRET in (tmp_path / "secrets.env").read_text()
    # The token is still one-time for anyone else (who has no request id, or another).
    async with httpx.AsyncClient(base_url=url) as http:
        for body in ({}, {"request_id": "someone-else"}):
            again = await http.post("/v1/bootstrap", headers={"Authorization": f"Bearer {token}"}, json=body)
            assert again.status_code == 410 and SECRET not in again.text


async def test_an_answer_held_past_the_timeout_is_fetched_again(
    api: tuple[str, ApiDeps], tmp_path: Path
) -> None:
    url, deps = api
    token = await secrets_for(deps)
    rid = startup_fetch.request_id(str(tmp_path))
    assert startup_fetch.request_id(str(tmp_path)) == rid  # a rerun of the script keeps it
    async with LossyProxy(url, lose=2, mode="stall").serving() as proxy:
        answer = await asyncio.to_thread(startup_fetch.fetch, proxy.url, token, rid, delay=0.05, timeout=0.5)
    assert isinstance(answer, dict) and answer["envs"] == {"HF_TOKEN": SECRET}, answer
    assert proxy.exchanges == 3


async def test_retries_are_bounded(api: tuple[str, ApiDeps], tmp_path: Path) -> None:
    url, deps = api
    token = await secrets_for(deps)
    async with LossyProxy(url, lose=100, mode="drop").serving() as proxy:
        answer = await asyncio.to_thread(
            startup_fetch.fetch, proxy.url, token, "rid-1", attempts=4, delay=0.01
        )
    assert answer == 3 and proxy.exchanges == 4
