"""The local provider as an ordinary user, and where no isolation is possible at all.

These run the provider for real in another identity: as uid 65534 (nobody) through setpriv,
and as root of a user namespace whose user-namespace limit is 0. The nobody run needs a
python nobody can read: this machine's pyenv lives under /root, so the test copies the code
under test and its two compiled dependencies (msgspec, psutil) to a world-readable temporary
directory and runs them with the system python of the same version.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psutil
import pytest

import services.provisioner.clouds as clouds_package
from libs.events import types as event_types

from .helpers import get_when_up, marked_processes

pytestmark = pytest.mark.timeout(90)

NOBODY = 65534
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
SETPRIV = shutil.which("setpriv")
UNSHARE = shutil.which("unshare")
AS_NOBODY = [SETPRIV or "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from libs.events.types import Placement
from services.provisioner.clouds.base import LaunchTask
from services.provisioner.clouds.errors import LaunchError
from services.provisioner.clouds.local import LocalProvider

def say(**message):
    print(json.dumps(message), flush=True)

async def main(state_dir, workdir):
    caps = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff"))
    try:
        await LocalProvider(Path(state_dir) / "netns", isolation="netns").launch(
            Placement(), LaunchTask(service="svc", replica_id=9, service_port=8080, run="true"))
        netns_error = ""
    except LaunchError as exc:
        netns_error = str(exc)
    provider = LocalProvider(Path(state_dir) / "auto")
    run = "echo $SKYPILOT_SERVE_REPLICA_ID > id.txt; exec timeout 300 python3 -m http.server 8080"
    try:
        launched = [
            await provider.launch(Placement(), LaunchTask(service="svc", replica_id=i, service_port=8080,
                                                          run=run, workdir=workdir))
            for i in (1, 2)
        ]
    except LaunchError as exc:
        say(error=str(exc), netns_error=netns_error, caps=caps)
        return
    say(mode=await provider.isolation_mode(), netns_error=netns_error, caps=caps,
        urls=[i.url for i in launched], ids=[i.instance_id for i in launched],
        pids=[int(i.details["pid"]) for i in launched])
    await asyncio.to_thread(sys.stdin.readline)  # the test has looked
    for i in launched:
        await provider.terminate(i.instance_id, grace_seconds=2)
    say(states=[str((await provider.status(i.instance_id)).state) for i in launched])

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _nobody_can_unshare() -> bool:
    probe = subprocess.run(
        [*AS_NOBODY, UNSHARE or "unshare", "--user", "--map-root-user", "--net", "true"],
        capture_output=True,
        timeout=15,
    )
    return probe.returncode == 0


def _copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))


@pytest.fixture
def nobody_site() -> Iterator[Path]:
    """A world-readable directory with the provider, its event types and its dependencies."""
    if os.geteuid() != 0 or SETPRIV is None or UNSHARE is None:
        pytest.skip("needs root (to become nobody), setpriv and unshare")
    if not SYSTEM_PYTHON.exists():
        pytest.skip(f"no {SYSTEM_PYTHON} for nobody to run (the compiled deps need this version)")
    root = Path(tempfile.mkdtemp(prefix="stratus-nobody-", dir="/tmp"))  # not under /root or tmp_path
    try:
        root.chmod(0o755)
        site = root / "site"
        _copy_tree(Path(msgspec.__file__).parent, site / "msgspec")
        _copy_tree(Path(psutil.__file__).parent, site / "psutil")
        _copy_tree(Path(clouds_package.__file__).parent, site / "services" / "provisioner" / "clouds")
        # Stub parents: the real libs/events/__init__ pulls in nats and asyncpg, which the
        # provider does not use.
        for package in ("services", "services/provisioner", "libs", "libs/events"):
            (site / package).mkdir(parents=True, exist_ok=True)
            (site / package / "__init__.py").write_text("")
        shutil.copy(event_types.__file__, site / "libs" / "events" / "types.py")
        (site / "script.py").write_text(_SCRIPT)
        (root / "www").mkdir()
        (root / "www" / "index.html").write_text("served by nobody\n")
        (root / "state").mkdir()
        os.chown(root / "state", NOBODY, NOBODY)
        for path in root.rglob("*"):
            path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else path.stat().st_mode | 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_an_ordinary_user_gets_userns_isolation_for_real(nobody_site: Path) -> None:
    can_unshare = await asyncio.to_thread(_nobody_can_unshare)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": str(nobody_site / "site")}
    argv = [*AS_NOBODY, str(SYSTEM_PYTHON), str(nobody_site / "site" / "script.py")]
    script = await asyncio.create_subprocess_exec(
        *argv, str(nobody_site / "state"), str(nobody_site / "www"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True,
    )  # fmt: skip
    ids: list[str] = []
    try:
        assert script.stdout is not None and script.stdin is not None
        report = json.loads(await asyncio.wait_for(script.stdout.readline(), 60))
        assert int(report["caps"], 16) == 0  # really unprivileged
        assert "isolation='netns' is unavailable" in report["netns_error"]
        assert f"uid {NOBODY} without them" in report["netns_error"]
        if not can_unshare:
            # Unprivileged user namespaces are off here: then the error must say so and how.
            assert "cannot isolate replicas" in report["error"] and "sysctl" in report["error"]
            return
        assert report["mode"] == "userns", report
        ids = report["ids"]
        for url, replica_id in zip(report["urls"], (1, 2), strict=True):
            assert url.startswith("http+unix://")
            assert (await get_when_up(url, "/index.html")).text == "served by nobody\n"
            assert (await get_when_up(url, "/id.txt")).text.strip() == str(replica_id)
        for instance_id in ids:
            assert {p.uids().real for p in marked_processes(instance_id)} == {NOBODY}

        script.stdin.write(b"done\n")
        await script.stdin.drain()
        final = json.loads(await asyncio.wait_for(script.stdout.readline(), 30))
        assert final["states"] == ["TERMINATED", "TERMINATED"]
        assert all(marked_processes(i) == [] for i in ids)
    finally:
        with contextlib.suppress(ProcessLookupError):
            script.kill()
        await script.wait()
        for instance_id in ids:  # whatever failed above, leave nothing running
            for proc in marked_processes(instance_id):
                proc.kill()


_NO_ISOLATION = """
import asyncio
from pathlib import Path
from libs.events.types import Placement
from services.provisioner.clouds.base import LaunchTask
from services.provisioner.clouds.errors import LaunchError
from services.provisioner.clouds.local import LocalProvider

async def main():
    try:
        await LocalProvider(Path({state!r})).launch(
            Placement(), LaunchTask(service="svc", replica_id=1, service_port=8080, run="true"))
    except LaunchError as exc:
        print(exc)

asyncio.run(main())
"""


async def test_with_no_isolation_available_launch_says_why_and_what_to_enable(tmp_path: Path) -> None:
    if UNSHARE is None:
        pytest.skip("needs unshare")
    # Root of a fresh user namespace whose own limit on nested user namespaces is 0: neither
    # netns (not root on the host) nor userns (ENOSPC) can work in there.
    shell = 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" -c "$1"'
    code = _NO_ISOLATION.format(state=str(tmp_path / "state"))
    result = await asyncio.to_thread(
        subprocess.run,
        [UNSHARE, "--user", "--map-root-user", "sh", "-c", shell, sys.executable, code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0 and "unshare failed" in result.stderr:
        pytest.skip(f"cannot create a user namespace here: {result.stderr.strip()}")
    message = result.stdout.strip()
    assert "cannot isolate replicas" in message, result
    assert "inside a user namespace" in message
    assert "No space left on device" in message
    assert "sysctl -w user.max_user_namespaces=15000" in message and "Run the provisioner as root" in message
