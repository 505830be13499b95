"""Replica logs over a real NATS: chunks, tails, listing, bad requests, nobody answering."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from libs.events.bus import connect
from libs.replica_logs import LogReply, LogRequest, LogsUnavailable, ReplicaLogClient, serve_replica_logs
from libs.replica_logs.protocol import MAX_CHUNK, decode, encode
from libs.replica_logs.server import answer
from services.provisioner.clouds.local import LocalProvider
from services.provisioner.logs_server import ProviderLogLocator


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await connect(nats_url, name="replica-logs-test")
    try:
        yield conn
    finally:
        await conn.close()


def locator(tmp_path: Path) -> ProviderLogLocator:
    return ProviderLogLocator(LocalProvider(tmp_path / "prov"))


def write_log(tmp_path: Path, service: str, replica_id: int, data: bytes) -> None:
    path = tmp_path / "prov" / "logs" / service / f"replica-{replica_id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def test_chunks_tail_and_list_over_nats(nc: NATS, tmp_path: Path, unique: str) -> None:
    big = b"".join(b"line %06d\n" % i for i in range(60_000))  # 720 KB: several chunks
    write_log(tmp_path, "svc", 1, big)
    write_log(tmp_path, "svc", 4, b"four\n")
    sub = await serve_replica_logs(nc, unique, locator(tmp_path))
    try:
        client = ReplicaLogClient(nc, unique)
        got, reply = b"", await client.read("svc", 1)
        while reply.data:
            assert len(reply.data) <= MAX_CHUNK
            got += reply.data
            reply = await client.read("svc", 1, offset=reply.next_offset)
        assert got == big
        assert (await client.read("svc", 1, tail=2)).data == b"line 059998\nline 059999\n"
        assert await client.replica_ids("svc") == [1, 4]
        missing = await client.read("svc", 2)
        assert not missing.found and missing.reason == "no log yet"
        assert not (await client.read("../etc", 1)).found  # no path outside the log directory
        assert await client.replica_ids("../etc") == []
    finally:
        await sub.unsubscribe()


def test_a_bad_request_is_answered_not_ignored(tmp_path: Path) -> None:
    reply = decode(answer(locator(tmp_path), b"\xc1 not msgpack"), LogReply)
    assert not reply.found and "not a LogRequest" in reply.error
    ok = decode(answer(locator(tmp_path), encode(LogRequest(service="svc", replica_id=1))), LogReply)
    assert not ok.found and ok.error == ""


async def test_nobody_answering_is_a_clear_error(nc: NATS, unique: str) -> None:
    client = ReplicaLogClient(nc, f"nobody{unique}", timeout=0.5)
    with pytest.raises(LogsUnavailable, match="no provisioner answered"):
        await client.read("svc", 1)
