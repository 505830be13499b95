"""A raw HTTP/1.1 client for router tests: exact bytes out, per-chunk arrival times in."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Resp:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    chunks: list[tuple[float, bytes]] = field(default_factory=list)  # (arrival time, data)
    framing: str = "none"  # length | chunked | close | none

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}

    def json(self) -> Any:
        return json.loads(self.body)


def build(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    version: str = "HTTP/1.1",
    host: str | None = "test.local",
) -> bytes:
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    hs = list(headers or [])
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hs):
        hs.append(("Content-Length", str(len(body))))
    lines += [f"{k}: {v}" for k, v in hs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def read_response(reader: asyncio.StreamReader, method: str = "GET", within: float = 5.0) -> Resp:
    async with asyncio.timeout(within):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head[:-4].decode("latin-1").split("\r\n")
            version, status, reason = [*lines[0].split(" ", 2), ""][:3]
            headers = []
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers.append((k.strip(), v.strip()))
            r = Resp(version, int(status), reason, headers)
            if r.status >= 200:
                break
        loop = asyncio.get_running_loop()
        te = (r.header("transfer-encoding") or "").lower()
        if method == "HEAD" or r.status in (204, 304):
            return r
        if "chunked" in te:
            r.framing = "chunked"
            while True:
                size = int((await reader.readline()).split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readline()
                    break
                data = await reader.readexactly(size)
                await reader.readexactly(2)
                r.chunks.append((loop.time(), data))
        elif r.header("content-length") is not None:
            r.framing = "length"
            n = int(r.header("content-length") or 0)
            while n:
                data = await reader.read(n)
                if not data:
                    raise asyncio.IncompleteReadError(b"", n)
                r.chunks.append((loop.time(), data))
                n -= len(data)
        else:
            r.framing = "close"
            while data := await reader.read(65536):
                r.chunks.append((loop.time(), data))
        r.body = b"".join(c for _, c in r.chunks)
        return r


class Conn:
    """One client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> Conn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        version: str = "HTTP/1.1",
        host: str | None = "test.local",
        within: float = 5.0,
    ) -> Resp:
        await self.send(build(method, target, headers, body, version, host))
        return await read_response(self.reader, method, within)

    async def at_eof(self, within: float = 2.0) -> bool:
        """True if the server closes the connection within ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                data = await self.reader.read(1)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def request(port: int, method: str = "GET", target: str = "/", **kw: Any) -> Resp:
    """One request on a new connection, which is then closed."""
    c = await Conn.open(port)
    try:
        return await c.request(method, target, **kw)
    finally:
        await c.close()


async def wait_until(cond: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Return once ``cond()`` is true; fail the test after ``within`` seconds (checked every 5 ms)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"still waiting after {within:g} s for {what}")
        await asyncio.sleep(0.005)
