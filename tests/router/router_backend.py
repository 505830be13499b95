"""A small, real HTTP/1.1 backend for router tests (asyncio streams, hand-written parsing).

Deliberately independent of httptools so that parser bugs are not mirrored.

Paths:
    /echo (default)         JSON describing the request; hop-by-hop response fields added
    /stream?n=&delay=       chunked, ``data: i`` events ``delay`` s apart (SSE-like)
    /until-close?n=&delay=  no framing: pieces ``delay`` s apart, then close
    /bytes?n=               Content-Length body of n bytes
    /upload                 reads the body as it comes, answers its size and digest
    /hang                   never answers; records when the peer goes away
    /reset                  closes the connection without answering
    /slow?delay=            answers /echo after ``delay`` s
    /truncate               announces 1000 bytes, sends 10, closes
    /close                  answers with ``Connection: close`` and closes
    /status?code=           empty answer with that status
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from services.router import ServiceEndpoint


@dataclass
class Req:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    conn_id: int
    index: int  # position on its connection, from 0
    body: bytes = b""
    body_arrivals: list[tuple[float, int]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


class Backend:
    def __init__(self, name: str = "b") -> None:
        self.name = name
        self.requests: list[Req] = []
        self.connections = 0
        self.open_connections = 0
        self.disconnects: list[str] = []  # paths whose client went away mid-request
        self.disconnected = asyncio.Event()
        self.drop_reused = 0  # close reused connections at their next request, without answering
        self.dropped = 0
        self.port = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ids = itertools.count(1)

    async def start(self, host: str = "127.0.0.1") -> str:
        self._server = await asyncio.start_server(self._handle, host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        return self.url

    async def start_unix(self, path: str) -> None:
        self._server = await asyncio.start_unix_server(self._handle, path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        if self._server is not None:
            await self._server.wait_closed()

    async def wait_disconnect(self, within: float = 3.0) -> bool:
        try:
            await asyncio.wait_for(self.disconnected.wait(), within)
        except TimeoutError:
            return False
        return True

    # -- connection handling -----------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        conn_id = next(self._ids)
        self.connections += 1
        self.open_connections += 1
        index = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    break
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers = []
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers.append((k.strip(), v.strip()))
                req = Req(method, target, version, headers, conn_id, index)
                if self.drop_reused and index > 0:
                    self.drop_reused -= 1
                    self.dropped += 1
                    break
                self.requests.append(req)
                keep = await self._serve(req, reader, writer)
                index += 1
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _read_body(self, req: Req, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (req.header("expect") or "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        loop = asyncio.get_running_loop()
        parts = []
        if "chunked" in (req.header("transfer-encoding") or "").lower():
            while True:
                size_line = await reader.readline()
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b""):
                        pass
                    break
                data = await reader.readexactly(size)
                await reader.readexactly(2)
                req.body_arrivals.append((loop.time(), len(data)))
                parts.append(data)
        else:
            n = int(req.header("content-length") or 0)
            while n > 0:
                data = await reader.read(min(n, 65536))
                if not data:
                    raise asyncio.IncompleteReadError(b"", n)
                req.body_arrivals.append((loop.time(), len(data)))
                parts.append(data)
                n -= len(data)
        req.body = b"".join(parts)

    def _gone(self, req: Req) -> bool:
        self.disconnects.append(req.path)
        self.disconnected.set()
        return False

    async def _serve(self, req: Req, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        q = {k: v[0] for k, v in parse_qs(urlsplit(req.target).query).items()}
        path = req.path
        if path == "/reset":  # close without answering
            return False
        if path == "/hang":
            try:
                await asyncio.wait_for(reader.read(1), 10)
            except TimeoutError:
                return False
            return self._gone(req)
        await self._read_body(req, reader, writer)
        keep = (req.header("connection") or "").lower() != "close" and req.version == "HTTP/1.1"
        if path == "/stream":
            n, delay = int(q.get("n", 5)), float(q.get("delay", 0.2))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for i in range(n):
                if i:
                    await asyncio.sleep(delay)
                if reader.at_eof() or writer.is_closing():
                    return self._gone(req)
                piece = f"data: {i}\n\n".encode()
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                try:
                    await writer.drain()
                except ConnectionError:
                    return self._gone(req)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return keep
        if path == "/until-close":
            n, delay = int(q.get("n", 3)), float(q.get("delay", 0.1))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            for i in range(n):
                if i:
                    await asyncio.sleep(delay)
                writer.write(f"piece {i}\n".encode())
                await writer.drain()
            return False
        if path == "/bytes":
            n = int(q.get("n", 1000))
            body = bytes(i % 251 for i in range(n))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
            writer.write(body)
            await writer.drain()
            return keep
        if path == "/upload":
            payload = {"received": len(req.body), "sha256": hashlib.sha256(req.body).hexdigest()}
            return await self._json(writer, req, payload, keep)
        if path == "/slow":
            await asyncio.sleep(float(q.get("delay", 0.3)))
        if path == "/truncate":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            await writer.drain()
            return False
        if path == "/close":
            return await self._json(
                writer, req, {"backend": self.name}, False, extra=b"Connection: close\r\n"
            )
        if path == "/status":
            code = int(q.get("code", 204))
            writer.write(
                b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % code
                if code != 204
                else b"HTTP/1.1 204 X\r\n\r\n"
            )
            await writer.drain()
            return keep
        payload = {
            "backend": self.name,
            "method": req.method,
            "target": req.target,
            "version": req.version,
            "headers": req.headers,
            "body": req.body.decode("latin-1"),
            "conn": req.conn_id,
            "index": req.index,
        }
        extra = b"Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-End: 1\r\n"
        return await self._json(writer, req, payload, keep, extra=extra)

    async def _json(
        self, writer: asyncio.StreamWriter, req: Req, payload: object, keep: bool, extra: bytes = b""
    ) -> bool:
        body = json.dumps(payload).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%b\r\n"
            % (len(body), extra)
        )
        if req.method != "HEAD":
            writer.write(body)
        await writer.drain()
        return keep


def now() -> float:
    return time.monotonic()


BackendFactory = Callable[..., Awaitable[Backend]]
EndpointFactory = Callable[..., Awaitable["ServiceEndpoint"]]
