"""Fixtures for the local provider tests.

``make_provider`` hands out LocalProviders on a per-test state dir and, whatever the test did,
terminates what they launched afterwards through a fresh provider (as a restarted provisioner
would), then checks that no process, namespace or veth of theirs is left; anything left is
removed by force and fails the test.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from services.provisioner.clouds.local import LocalProvider
from services.provisioner.clouds.local_isolation import netns_unavailable
from services.provisioner.clouds.local_probe import LAUNCHER, find_ip_binary, netns_facts
from services.provisioner.clouds.local_records import Mode, iter_records

from .helpers import link_exists, marked_processes, netns_exists

MakeProvider = Callable[..., LocalProvider]


@pytest.fixture(scope="session")
def unavailable_modes() -> dict[str, str | None]:
    """Why each isolation mode cannot run here (None: it can)."""
    probe = subprocess.run(
        [sys.executable, "-E", "-s", str(LAUNCHER), "probe-userns"],
        capture_output=True,
        text=True,
        timeout=15,
    )
    return {
        "netns": netns_unavailable(netns_facts()),
        "userns": None if probe.returncode == 0 else probe.stdout.strip() or "probe failed",
    }


@pytest.fixture(params=["netns", "userns"])
def mode(request: pytest.FixtureRequest, unavailable_modes: dict[str, str | None]) -> Mode:
    chosen: Mode = request.param
    if unavailable_modes[chosen] is not None:
        pytest.skip(f"{chosen} isolation unavailable here: {unavailable_modes[chosen]}")
    return chosen


@pytest.fixture
def any_mode(unavailable_modes: dict[str, str | None]) -> Mode:
    """For tests of what does not depend on the isolation: whichever works here."""
    names: tuple[Mode, ...] = ("netns", "userns")
    for name in names:
        if unavailable_modes[name] is None:
            return name
    pytest.skip(f"no isolation available here: {unavailable_modes}")


@pytest.fixture
async def make_provider(tmp_path: Path) -> AsyncIterator[MakeProvider]:
    made: list[LocalProvider] = []

    def make(isolation: str = "auto", state_dir: Path | None = None, **kwargs: Any) -> LocalProvider:
        provider = LocalProvider(state_dir or tmp_path / "state", isolation=isolation, **kwargs)  # type: ignore[arg-type]
        made.append(provider)
        return provider

    yield make
    leaks: list[str] = []
    for state_dir in sorted({p.state_dir for p in made}):
        fresh = LocalProvider(state_dir)
        for instance in await fresh.list_instances():
            try:
                await fresh.terminate(instance.instance_id, grace_seconds=0)
            except Exception as exc:
                leaks.append(f"terminate {instance.instance_id} failed: {exc!r}")
        leaks += _force_cleanup(state_dir)
    assert not leaks, leaks


def _force_cleanup(state_dir: Path) -> list[str]:
    leaks = []
    ip = find_ip_binary() or "ip"
    for record in iter_records(state_dir / "replicas"):
        for proc in marked_processes(record.instance_id):
            leaks.append(f"{record.instance_id}: process {proc.pid} {proc.cmdline()} left running")
            proc.kill()
        nodes = [(record.netns, record.veth_host, record.veth_ns)]
        nodes += [(w.netns, w.veth_host, w.veth_ns) for w in record.workers]  # multi-node replicas
        for netns, *links in nodes:
            if netns and netns_exists(netns):
                leaks.append(f"{record.instance_id}: netns {netns} left")
                subprocess.run([ip, "netns", "del", netns], check=False, timeout=10)
            for link in links:
                if link and link_exists(link):
                    leaks.append(f"{record.instance_id}: veth {link} left")
                    subprocess.run([ip, "link", "del", link], check=False, timeout=10)
    return leaks
