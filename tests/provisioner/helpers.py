"""Helpers for the local provider tests: reaching replicas, finding their processes, waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

import httpx
import psutil

from services.provisioner.clouds.base import InstanceState, InstanceStatus
from services.provisioner.clouds.local import LocalProvider
from services.provisioner.clouds.local_env import INSTANCE_MARKER

T = TypeVar("T")


def client_for(url: str) -> tuple[httpx.AsyncClient, str]:
    """A client and base URL that reach a replica's url, http:// or http+unix://."""
    if url.startswith("http+unix://"):
        transport = httpx.AsyncHTTPTransport(uds=unquote(url.removeprefix("http+unix://")))
        return httpx.AsyncClient(transport=transport, timeout=2), "http://replica"
    return httpx.AsyncClient(timeout=2), url


async def get_when_up(url: str, path: str = "/", *, within: float = 15.0) -> httpx.Response:
    """GET ``path`` from a replica, retrying while it starts (bounded)."""
    client, base = client_for(url)
    deadline = time.monotonic() + within
    async with client:
        while True:
            try:
                return await client.get(base + path)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, within: float = 10.0
) -> T:
    """Poll ``probe`` until ``accept`` says yes (bounded); return the last value either way."""
    deadline = time.monotonic() + within
    value = await probe()
    while not accept(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        value = await probe()
    return value


async def status_becomes(
    provider: LocalProvider, instance_id: str, state: InstanceState, *, within: float = 10.0
) -> InstanceStatus:
    return await eventually(lambda: provider.status(instance_id), lambda s: s.state == state, within=within)


def marked_processes(instance_id: str) -> list[psutil.Process]:
    """Live processes carrying the instance marker (what a leak would look like)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(INSTANCE_MARKER) == instance_id:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def exists(path: str | Path) -> bool:
    """Path.exists, for async tests: a stat of a local file does not block anything."""
    return Path(path).exists()


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()
