"""Looking at this machine to decide the local provider's isolation (I/O; the decision is in
local_isolation)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from .local_command import run_command
from .local_isolation import NetnsFacts, UsernsFacts, is_init_userns, parse_cap_eff

LAUNCHER = Path(__file__).with_name("local_launcher.py")
BRIDGE = Path(__file__).with_name("local_bridge.py")

_USERNS_SYSCTLS = (
    "kernel.unprivileged_userns_clone",
    "user.max_user_namespaces",
    "kernel.apparmor_restrict_unprivileged_userns",
)


def find_ip_binary() -> str | None:
    # An ordinary user's PATH often lacks the sbin directories where iproute2 lives.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
    return shutil.which("ip", path=path)


def netns_facts() -> NetnsFacts:
    try:
        cap_eff = parse_cap_eff(Path("/proc/self/status").read_text())
        init_userns = is_init_userns(Path("/proc/self/uid_map").read_text())
    except OSError:
        cap_eff, init_userns = 0, False
    return NetnsFacts(euid=os.geteuid(), cap_eff=cap_eff, ip_binary=find_ip_binary(), init_userns=init_userns)


def _read_sysctls() -> dict[str, str]:
    found = {}
    for name in _USERNS_SYSCTLS:
        with contextlib.suppress(OSError):  # this kernel may have no such knob
            found[name] = Path("/proc/sys", *name.split(".")).read_text().strip()
    return found


async def userns_facts(python: str) -> UsernsFacts:
    """Try it for real: a child creates a user + network namespace and raises its loopback."""
    result = await run_command([python, "-E", "-s", str(LAUNCHER), "probe-userns"], time_limit=15)
    if result.returncode == 0:
        return UsernsFacts(error=None)
    error = (result.stdout.strip() or result.stderr.strip() or f"exit code {result.returncode}")[-500:]
    return UsernsFacts(error=error, sysctls=_read_sysctls())
