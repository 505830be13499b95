"""Router throughput on loopback without wrk or nginx: keep-alive GETs through one endpoint.

Three processes: two raw-asyncio backends (a fixed ~200-byte JSON answer, like
``peer_lb.sh``'s ``GET /small``), the router (``python -m services.router.standalone``) over
them, and a load generator (uvloop Protocols, ``--conns`` keep-alive connections, one request
in flight on each). It reports requests per second through the router and straight to one
backend (``direct``), medians over ``--rounds``, and the router process's CPU time per request
(user + system, from /proc), which depends much less on what else the machine runs than req/s.
The load generator is Python too, so on a small machine it competes with the router for CPU:
compare figures from the same run only.

    python -m bench.router.throughput [--conns 64] [--seconds 5] [--rounds 3] [--baseline DIR]

``--baseline DIR`` also runs the router of another checkout (e.g. ``git archive`` of an older
commit unpacked in DIR) as peer ``baseline``, interleaved round by round with this one, so
that both see the same machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import cast

BODY = json.dumps({"replica": 1, "text": "x" * 170}).encode()
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (
    len(BODY),
    BODY,
)
REQUEST = b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"


class _BackendProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = cast(asyncio.Transport, transport)
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4 :]
            self.t.write(RESPONSE * n)


async def _backend(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_BackendProtocol, "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


class _LoadProtocol(asyncio.Protocol):
    def __init__(self, counter: list[int], deadline: float) -> None:
        self.counter = counter
        self.deadline = deadline
        self.done = asyncio.get_running_loop().create_future()
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = cast(asyncio.Transport, transport)
        self.t.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self.pending += data
        while True:
            i = self.pending.find(b"\r\n\r\n")
            if i < 0:
                return
            head = self.pending[:i].lower()
            j = head.find(b"content-length:")
            length = int(head[j + 15 :].split(b"\r\n", 1)[0]) if j >= 0 else 0
            end = i + 4 + length
            if len(self.pending) < end:
                return
            if not head.startswith(b"http/1.1 200"):
                raise SystemExit(f"bad response: {head[:60]!r}")
            self.pending = self.pending[end:]
            self.counter[0] += 1
            if time.monotonic() >= self.deadline:
                self.t.close()
                return
            self.t.write(REQUEST)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _load(port: int, conns: int, seconds: float) -> float:
    loop = asyncio.get_running_loop()
    counter = [0]
    warm = time.monotonic() + 1.0
    protos = [
        (await loop.create_connection(lambda: _LoadProtocol(counter, warm), "127.0.0.1", port))[1]
        for _ in range(conns)
    ]
    await asyncio.wait_for(asyncio.gather(*(p.done for p in protos)), 30)
    counter[0] = 0
    t0 = time.monotonic()
    deadline = t0 + seconds
    protos = [
        (await loop.create_connection(lambda: _LoadProtocol(counter, deadline), "127.0.0.1", port))[1]
        for _ in range(conns)
    ]
    await asyncio.wait_for(asyncio.gather(*(p.done for p in protos)), seconds + 30)
    return counter[0] / (time.monotonic() - t0)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process on port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on port {port} after {timeout:g} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.router.throughput", description=__doc__)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline", help="another checkout whose router runs as peer 'baseline'")
    p.add_argument("--role", choices=["backend", "load"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import uvloop

    if args.role == "backend":
        uvloop.run(_backend(args.port))
        return 0
    if args.role == "load":
        print(uvloop.run(_load(args.port, args.conns, args.seconds)))
        return 0
    me = [sys.executable, "-m", "bench.router.throughput"]
    b1, b2, rport = _free_port(), _free_port(), _free_port()
    procs = [subprocess.Popen([*me, "--role", "backend", "--port", str(b)]) for b in (b1, b2)]
    try:
        for b, pr in zip((b1, b2), procs, strict=True):
            _wait_listening(b, pr)
        peers = [("direct", b1), ("router", rport)]
        trees = [("router", rport, os.getcwd())]
        if args.baseline:
            bport = _free_port()
            peers.append(("baseline", bport))
            trees.append(("baseline", bport, os.path.abspath(args.baseline)))
        pids: dict[str, int] = {}
        for name, port, tree in trees:
            router = subprocess.Popen(
                [sys.executable, "-m", "services.router.standalone", "--port", str(port),
                 "--backends", f"127.0.0.1:{b1},127.0.0.1:{b2}"],
                env={**os.environ, "LOG_LEVEL": "WARNING", "PYTHONPATH": tree}, cwd=tree,
            )  # fmt: skip
            procs.append(router)
            pids[name] = router.pid
            _wait_listening(port, router)
        results: dict[str, list[float]] = {name: [] for name, _ in peers}
        cpu: dict[str, list[float]] = {name: [] for name in pids}
        for _ in range(args.rounds):
            for name, port in peers:
                c0 = _cpu_seconds(pids[name]) if name in pids else 0.0
                out = subprocess.run(
                    [*me, "--role", "load", "--port", str(port), "--conns", str(args.conns),
                     "--seconds", str(args.seconds)],
                    check=True, capture_output=True, timeout=args.seconds + 90,
                )  # fmt: skip
                rps = float(out.stdout.decode().strip().splitlines()[-1])
                results[name].append(rps)
                if name in pids:  # CPU over the warm-up second and the run, per request of the run
                    cpu[name].append((_cpu_seconds(pids[name]) - c0) / (rps * (args.seconds + 1.0)) * 1e6)
        for name, runs in results.items():
            runs_s = "/".join(f"{r:.0f}" for r in runs)
            med = statistics.median(runs)
            line = f"{name:8s} conns={args.conns} req/s median {med:.0f} (rounds {runs_s})"
            if name in cpu:
                line += f"; router CPU µs/req median {statistics.median(cpu[name]):.1f}"
            print(line)
    finally:
        for pr in procs:
            pr.send_signal(signal.SIGTERM)
        for pr in procs:
            try:
                pr.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pr.kill()
                pr.wait(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
