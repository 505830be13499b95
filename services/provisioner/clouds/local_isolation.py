"""Choosing how local replicas are isolated, and saying why when none works (pure).

netns   as root: one named network namespace per replica, joined to the host by a veth pair;
        the router reaches http://<namespace address>:<port>.
userns  as an ordinary user: an unprivileged user + network namespace per replica, reached
        through a unix socket that a bridge inside the namespace forwards to 127.0.0.1:<port>.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .errors import LaunchError
from .local_records import Mode

IsolationRequest = Literal["auto", "netns", "userns"]

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21  # `ip netns add` bind-mounts the namespace under /run/netns


@dataclass(frozen=True)
class NetnsFacts:
    euid: int
    cap_eff: int  # the effective capability mask
    ip_binary: str | None
    # Capabilities held inside a user namespace (rootless containers) do not let us create
    # host-visible namespaces under /run/netns, however full CapEff looks.
    init_userns: bool = True


@dataclass(frozen=True)
class UsernsFacts:
    error: str | None  # None: a user + network namespace was created and its loopback raised
    sysctls: Mapping[str, str] = field(default_factory=dict)  # knobs that gate it, as read


def parse_cap_eff(proc_status: str) -> int:
    for line in proc_status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def is_init_userns(uid_map: str) -> bool:
    """The initial user namespace maps all 2**32-1 ids onto themselves."""
    return uid_map.split() == ["0", "0", "4294967295"]


def netns_unavailable(facts: NetnsFacts) -> str | None:
    """Why netns mode cannot work here, or None when it can."""
    needed = (1 << CAP_NET_ADMIN) | (1 << CAP_SYS_ADMIN)
    if not facts.init_userns:
        return "network namespaces need root on the host; this provider runs inside a user namespace"
    if facts.cap_eff & needed != needed:
        return (
            f"network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN); this provider runs as "
            f"uid {facts.euid} without them"
        )
    if facts.ip_binary is None:
        return "network namespaces need the `ip` command (iproute2), which is not installed"
    return None


def userns_hints(sysctls: Mapping[str, str]) -> list[str]:
    """What to change so that ordinary users may create user namespaces."""
    hints = []
    if sysctls.get("kernel.unprivileged_userns_clone") == "0":
        hints.append("sysctl -w kernel.unprivileged_userns_clone=1")
    if sysctls.get("user.max_user_namespaces") == "0":
        hints.append("sysctl -w user.max_user_namespaces=15000")
    if sysctls.get("kernel.apparmor_restrict_unprivileged_userns") == "1":
        hints.append(
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor profile that "
            "allows user namespaces for this python)"
        )
    if not hints:
        hints.append(
            "allow unprivileged user namespaces (kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces>0, no seccomp/AppArmor policy denying unshare)"
        )
    return hints


def choose_isolation(request: IsolationRequest, netns_reason: str | None, userns: UsernsFacts | None) -> Mode:
    """``userns`` may be None when it was not probed (netns was requested or available)."""
    if request in ("auto", "netns") and netns_reason is None:
        return "netns"
    if request == "netns":
        raise LaunchError(f"isolation='netns' is unavailable: {netns_reason}. Run as root or use 'userns'.")
    if userns is not None and userns.error is None:
        return "userns"
    why_userns = userns.error if userns is not None else "not probed"
    fixes = " or ".join(userns_hints(userns.sysctls if userns is not None else {}))
    if request == "userns":
        raise LaunchError(
            f"isolation='userns' is unavailable: creating an unprivileged user + network namespace "
            f"failed ({why_userns}). To enable it: {fixes}."
        )
    raise LaunchError(
        "the local provider cannot isolate replicas (two replicas must be able to listen on the same "
        f"port): {netns_reason}, and creating an unprivileged user + network namespace failed "
        f"({why_userns}). Run the provisioner as root, or enable user namespaces: {fixes}."
    )
