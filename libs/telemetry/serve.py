"""Each process serves its metrics on ``http://127.0.0.1:<port>/metrics`` (a free port) and says
where in ``STRATUS_HOME/run/metrics/<component>-<pid>.json``, which ``stratus local status``
lists. The server is a threading WSGI server on a daemon thread with prometheus-client's app:
scraping never waits on the event loop. Given a ``HealthEndpoint``, the same server answers
``GET /healthz`` (``health.py``); ``stratus local status`` shows each component's answer."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
from prometheus_client import REGISTRY, make_wsgi_app

from .health import HealthEndpoint

HOST = "127.0.0.1"
HEALTH_TIMEOUT = 3.0  # seconds `stratus local status` waits for a component's /healthz


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a request's thread never holds up the process's exit


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log (scrapes every few seconds)."""


def _app(health: HealthEndpoint | None) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            answer: Iterable[bytes] = metrics(environ, start_response)
            return answer
        if health is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no /healthz in this process\n"]
        status, body = health.answer()
        reason = "OK" if status == 200 else "Service Unavailable"
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        start_response(f"{status} {reason}", headers)
        return [body]

    return app


def metrics_dir(home: Path) -> Path:
    return home / "run" / "metrics"


def serve_metrics(
    component: str, home: Path, health: HealthEndpoint | None = None
) -> tuple[str, Callable[[], None]]:
    """Start the server; returns its /metrics URL and a function that stops it (and forgets it)."""
    server = make_server(HOST, 0, _app(health), _Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name=f"{component}-metrics", daemon=True)
    thread.start()
    base = f"http://{HOST}:{server.server_port}"
    url = f"{base}/metrics"
    info: dict[str, Any] = {"component": component, "pid": os.getpid(), "url": url}
    if health is not None:
        info["healthz"] = f"{base}/healthz"
    path = metrics_dir(home) / f"{component}-{os.getpid()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    return url, stop


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def metrics_endpoints(home: Path) -> list[dict[str, Any]]:
    """Where each live process of this home serves /metrics (files of dead pids are skipped)."""
    out: list[dict[str, Any]] = []
    for f in sorted(metrics_dir(home).glob("*.json")):
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and isinstance(info.get("pid"), int) and _alive(info["pid"]):
            out.append(info)
    return out


def fetch_health(url: str | None) -> dict[str, Any] | None:
    """A component's /healthz answer (its JSON, 503 included); None when it has none or is away."""
    if url is None:
        return None
    try:
        answer = httpx.get(url, timeout=HEALTH_TIMEOUT)
        body = answer.json()
    except (httpx.HTTPError, ValueError):
        return {"healthy": False, "status": "unreachable", "problems": [f"no answer from {url}"]}
    return body if isinstance(body, dict) else None


def local_status(settings: Any, supervisor_pid: int, state: dict[str, Any]) -> dict[str, Any]:
    """``stratus local status``: the supervisor's components, each one's /metrics and /healthz."""
    home: Path = settings.home
    metrics = metrics_endpoints(home)
    components = {}
    for name, info in (state.get("components") or {}).items():
        pid = info.get("pid")
        up = isinstance(pid, int) and _alive(pid)
        mine = [m for m in metrics if m["component"] == name and m["pid"] == pid]
        components[name] = {
            "pid": pid, "up": up, "restarts": info.get("restarts", 0),
            "metrics": mine[0]["url"] if mine else None,
            "health": fetch_health(mine[0].get("healthz")) if mine and up else None,
        }  # fmt: skip
    return {
        "supervisor_pid": supervisor_pid, "home": str(home), "api_url": settings.api_url,
        "components": components, "metrics": metrics,
    }  # fmt: skip
