"""Each process serves its metrics on ``http://127.0.0.1:<port>/metrics`` (a free port) and says
where in ``STRATUS_HOME/run/metrics/<component>-<pid>.json``, which ``stratus local status
--json`` lists. The server is prometheus-client's, on a daemon thread: scraping never waits on
the event loop."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

HOST = "127.0.0.1"


def metrics_dir(home: Path) -> Path:
    return home / "run" / "metrics"


def serve_metrics(component: str, home: Path) -> tuple[str, Callable[[], None]]:
    """Start the server; returns its /metrics URL and a function that stops it (and forgets it)."""
    server, thread = start_http_server(0, HOST)
    url = f"http://{HOST}:{server.server_port}/metrics"
    path = metrics_dir(home) / f"{component}-{os.getpid()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"component": component, "pid": os.getpid(), "url": url}))
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


def local_status(settings: Any, supervisor_pid: int, state: dict[str, Any]) -> dict[str, Any]:
    """``stratus local status --json``: the supervisor's components and each one's /metrics."""
    home: Path = settings.home
    metrics = metrics_endpoints(home)
    components = {}
    for name, info in (state.get("components") or {}).items():
        pid = info.get("pid")
        up = isinstance(pid, int) and _alive(pid)
        urls = [m["url"] for m in metrics if m["component"] == name and m["pid"] == pid]
        components[name] = {
            "pid": pid, "up": up, "restarts": info.get("restarts", 0), "metrics": urls[0] if urls else None,
        }  # fmt: skip
    return {
        "supervisor_pid": supervisor_pid, "home": str(home), "api_url": settings.api_url,
        "components": components, "metrics": metrics,
    }  # fmt: skip
