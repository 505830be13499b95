"""The prober's adapter against real sockets: each failure becomes the prober's own error."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from libs.fleet.policy import ProbePolicy
from services.prober.http_probe import HttpProber

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
POLICY = ProbePolicy(path="/health", timeout_seconds=0.3, headers={"X-Spec": "from-spec"})


async def _answer(status: bytes, seen: list[bytes]) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    return handle


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"this is not http\r\n\r\n")
    await writer.drain()
    writer.close()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await reader.read()  # never answers: waits until the client gives up (its timeout) and closes
    writer.close()


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    writer.transport.abort()


@pytest.fixture
async def prober() -> AsyncIterator[HttpProber]:
    p = HttpProber()
    try:
        yield p
    finally:
        await p.aclose()


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_success_sends_the_given_headers(prober: HttpProber) -> None:
    seen: list[bytes] = []
    server, url = await _serve(await _answer(b"200 OK", seen))
    async with server:
        result = await prober.probe(url, POLICY, {"Authorization": "Bearer real-value"})
        assert result.ok and result.status_code == 200
        assert b"\r\nAuthorization: Bearer real-value\r\n" in seen[0]
        assert b"X-Spec" not in seen[0]  # the given headers replace the spec's
        assert (await prober.probe(url, POLICY)).ok
        assert b"\r\nX-Spec: from-spec\r\n" in seen[1]


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (_garbage, "invalid HTTP response"),
        (_silent, "timeout after 0.3s"),
        (_reset, "connection reset"),
    ],
    ids=["garbage", "silent", "reset"],
)
async def test_transport_failures(prober: HttpProber, handler: Handler, reason: str) -> None:
    server, url = await _serve(handler)
    async with server:
        result = await asyncio.wait_for(prober.probe(url, POLICY), 5)
    assert not result.ok and result.reason == reason


async def test_an_http_error_status(prober: HttpProber) -> None:
    server, url = await _serve(await _answer(b"503 Service Unavailable", []))
    async with server:
        result = await prober.probe(url, POLICY)
    assert (result.ok, result.reason, result.status_code) == (False, "HTTP 503", 503)


async def test_nothing_listening_is_refused(prober: HttpProber, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await prober.probe(f"http://127.0.0.1:{port}", POLICY)
    assert not result.ok and result.reason == "connection refused"
    missing = str(tmp_path / "replica.sock").replace("/", "%2F")
    result = await prober.probe(f"http+unix://{missing}", POLICY)
    assert not result.ok and result.reason == "connection refused"
