"""Run one service endpoint over a fixed list of backends (benchmarks, manual tests).

    python -m services.router.standalone --port 18400 \\
        --backends 127.0.0.1:18081,127.0.0.1:18082 [--policy least_load] [--workers 1]

``--port`` and ``--backends`` default to the ``PORT`` and ``BACKENDS``
environment variables. A backend is ``host:port``, ``http://host:port`` or
``http+unix://<percent-encoded socket path>``. ``--workers N`` (N > 1) runs N
processes sharing the port with SO_REUSEPORT; each balances on its own.
Uses uvloop when it is installed.

``--metrics on`` (the default, or ``STRATUS_ROUTER_METRICS``) counts requests as the router
service does and serves them on ``http://127.0.0.1:<--metrics-port>/metrics`` (a free port
unless given); ``--metrics off`` counts nothing and serves nothing (``bench/router/peer_metrics.sh``
measures the difference).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from libs.runtime.settings import Settings
from libs.telemetry.router_stats import watch_router
from services.router.balance import DEFAULT_POLICY, POLICIES
from services.router.endpoint import ServiceEndpoint
from services.router.options import EndpointOptions
from services.router.replicas import ReplicaPool

log = logging.getLogger("services.router.standalone")
DESCRIPTION = "Run one Stratus router endpoint over a fixed list of backends."


class _OneEndpoint:
    """The endpoint as the router collector sees a router (``watch_router``)."""

    def __init__(self, ep: ServiceEndpoint) -> None:
        self.ep = ep

    def services(self) -> list[str]:
        return [self.ep.service]

    def endpoint(self, name: str) -> ServiceEndpoint:
        return self.ep


def serve_metrics(ep: ServiceEndpoint, port: int) -> _OneEndpoint:
    from prometheus_client import start_http_server

    one = _OneEndpoint(ep)
    watch_router(one)  # weakly held: the caller keeps ``one``
    server, _thread = start_http_server(port, "127.0.0.1")
    log.warning("router (pid %d) metrics on http://127.0.0.1:%d/metrics", os.getpid(), server.server_port)
    return one


def backend_urls(spec: str) -> list[str]:
    urls = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        urls.append(item if "://" in item else f"http://{item}")
    return urls


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m services.router.standalone", description=DESCRIPTION)
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "0") or 0))
    p.add_argument("--backends", default=os.environ.get("BACKENDS", ""))
    p.add_argument("--policy", default=os.environ.get("POLICY", DEFAULT_POLICY), choices=sorted(POLICIES))
    p.add_argument("--service", default="standalone")
    p.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1") or 1))
    p.add_argument("--response-timeout", type=float, default=600.0)
    p.add_argument("--hold-when-empty", action="store_true")
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "WARNING"))
    p.add_argument("--metrics", choices=("on", "off"), default=Settings.from_env().router_metrics)
    p.add_argument("--metrics-port", type=int, default=0, help="port of /metrics (default: a free one)")
    args = p.parse_args(argv)
    if not args.port:
        p.error("--port (or PORT) is required")
    if not backend_urls(args.backends):
        p.error("--backends (or BACKENDS) is required")
    if args.workers < 1:
        p.error("--workers must be >= 1")
    return args


async def serve(args: argparse.Namespace) -> None:
    pool = ReplicaPool(args.service, args.policy)
    for i, url in enumerate(backend_urls(args.backends), start=1):
        pool.set_ready(i, url)
    options = EndpointOptions(
        response_timeout=args.response_timeout,
        hold_when_empty=args.hold_when_empty,
        reuse_port=args.reuse_port,
        metrics=args.metrics == "on",
    )
    ep = ServiceEndpoint(pool, options)
    port = await ep.start(args.host, args.port)
    watched = serve_metrics(ep, args.metrics_port) if args.metrics == "on" else None
    log.warning(
        "router (pid %d) serving %s on %s:%d -> %s", os.getpid(), args.service, args.host, port, args.backends
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await ep.close(grace=1.0)
        del watched


def run(args: argparse.Namespace) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.workers == 1:
        run(args)
        return 0
    # N processes sharing the port: this one plus N-1 children.
    args.reuse_port = True
    child_argv = [sys.executable, "-m", "services.router.standalone", *(argv or sys.argv[1:])]
    child_argv += ["--workers", "1", "--reuse-port", "--port", str(args.port), "--backends", args.backends]
    child_argv += ["--metrics-port", "0"]  # each process serves its own counts
    children = [subprocess.Popen(child_argv) for _ in range(args.workers - 1)]
    try:
        run(args)
    finally:
        for c in children:
            c.send_signal(signal.SIGTERM)
        for c in children:
            try:
                c.wait(timeout=5)
            except subprocess.TimeoutExpired:
                c.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.wait(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
