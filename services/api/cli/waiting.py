"""Following an update until its version serves (``stratus update`` without ``--async``)."""

from __future__ import annotations

import time
from typing import Any

import typer

from .. import render
from ..client import StratusClient
from .common import fail

STOPPED = frozenset({"FAILED_CLEANUP", "TERMINATED", "SHUTTING_DOWN"})


def version_progress(svc: dict[str, Any], version: int) -> tuple[bool, str]:
    """(done, one line): done once a replica of ``version`` is READY and no older one is, or the
    version has no replica to wait for (scaled to zero) and none of the older ones is left."""
    replicas = svc.get("replicas") or []
    new = [r for r in replicas if r["version"] == version]
    old_ready = [r for r in replicas if r["version"] < version and r["status"] == "READY"]
    new_ready = [r for r in new if r["status"] == "READY"]
    line = (
        f"  version {version}: {len(new_ready)} of {len(new)} READY; older versions: {len(old_ready)} READY"
    )
    if svc["status"] == "NO_REPLICA" and not new and not old_ready:
        return True, line + " (no replica wanted)"
    return bool(new_ready) and not old_ready, line


def wait_for_version(
    client: StratusClient, name: str, version: int, *, timeout: float, poll_interval: float
) -> None:
    typer.echo(
        f"Waiting for version {version} of {name!r} to serve (Ctrl-C stops waiting; the update goes on)."
    )
    deadline = time.monotonic() + timeout
    last = None
    try:
        while True:
            svc = client.get_service(name)
            done, line = version_progress(svc, version)
            reason = svc.get("status_reason") or ""
            if line != last:
                typer.echo(line)
                last = line
            if done:
                endpoint = render.endpoint_url(svc)
                typer.echo(f"Service {name!r} serves version {version}.\nEndpoint: {endpoint}")
                return
            if svc["status"] in STOPPED or f"version {version} failed" in reason:
                fail(
                    f"version {version} of {name!r} is not serving: {svc['status']}: {reason or '-'}\n"
                    f"hint: `stratus status {name} -v` and `stratus logs {name} REPLICA_ID` show more"
                )
            if time.monotonic() >= deadline:
                fail(f"version {version} of {name!r} not serving after {timeout:g}s: `stratus status {name}`")
            time.sleep(poll_interval)
    except KeyboardInterrupt:
        typer.echo(f"\nStopped waiting; the update of {name!r} goes on: `stratus status {name}`", err=True)
        raise typer.Exit(130) from None
