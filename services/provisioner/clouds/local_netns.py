"""Root mode isolation: a named network namespace per replica, joined to the host by a veth pair.

Each replica gets a /30 of a private range (10.213.0.0/16 by default): the host end of the veth
holds the first address, the namespace end the second, so the router reaches the replica at
``http://<second address>:<port>`` while every replica may listen on the same port.

Names derive from (state dir, service, replica id): stable, so a relaunch after a crash finds
and removes a stale namespace of the same name, and distinct between state dirs. Addresses are
allocated under a host-wide lock from what the host's interfaces actually hold, so several
providers (or test sessions) on one machine never pick the same /30.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import ipaddress
import json
import os
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import LaunchError, ProviderError, TransientError
from .local_command import run_command

DEFAULT_SUBNET = "10.213.0.0/16"
HOST_LOCK = Path("/run/stratus-netns.lock")
_LOCK_TIMEOUT = 30.0
MAX_IFNAME = 15  # IFNAMSIZ - 1


@dataclass(frozen=True)
class NetnsNames:
    netns: str
    veth_host: str
    veth_ns: str


@dataclass(frozen=True)
class NetnsAddresses:
    host_ip: str
    ns_ip: str


# --------------------------------------------------------------------------- pure


def netns_names(state_dir: Path, service: str, replica_id: int) -> NetnsNames:
    digest = hashlib.sha256(f"{state_dir}\0{service}\0{replica_id}".encode()).hexdigest()[:10]
    return NetnsNames(netns=f"stratus-{digest}", veth_host=f"st{digest}h", veth_ns=f"st{digest}n")


def slot_addresses(network: ipaddress.IPv4Network, slot: int) -> NetnsAddresses:
    base = int(network.network_address) + 4 * slot
    return NetnsAddresses(
        host_ip=str(ipaddress.IPv4Address(base + 1)), ns_ip=str(ipaddress.IPv4Address(base + 2))
    )


def pick_slot(used: Iterable[str], network: ipaddress.IPv4Network) -> int | None:
    """The lowest /30 of ``network`` none of whose addresses is in ``used``."""
    taken = set()
    for address in used:
        ip = ipaddress.IPv4Address(address)
        if ip in network:
            taken.add((int(ip) - int(network.network_address)) // 4)
    for slot in range(network.num_addresses // 4):
        if slot not in taken:
            return slot
    return None


def addresses_in_use(ip_json: str) -> list[str]:
    """IPv4 addresses from ``ip -j -4 addr show`` output."""
    return [info["local"] for link in json.loads(ip_json or "[]") for info in link.get("addr_info", [])]


def setup_commands(ip: str, names: NetnsNames, addrs: NetnsAddresses) -> list[list[str]]:
    ns = names.netns
    return [
        [ip, "netns", "add", ns],
        [ip, "link", "add", names.veth_host, "type", "veth", "peer", "name", names.veth_ns],
        [ip, "link", "set", names.veth_ns, "netns", ns],
        [ip, "addr", "add", f"{addrs.host_ip}/30", "dev", names.veth_host],
        [ip, "link", "set", names.veth_host, "up"],
        [ip, "-n", ns, "addr", "add", f"{addrs.ns_ip}/30", "dev", names.veth_ns],
        [ip, "-n", ns, "link", "set", names.veth_ns, "up"],
        [ip, "-n", ns, "link", "set", "lo", "up"],
        # Replies to the router need no route; this one lets the replica reach the host side.
        [ip, "-n", ns, "route", "add", "default", "via", addrs.host_ip],
    ]


# --------------------------------------------------------------------------- adapter


def netns_path(name: str) -> Path:
    return Path("/run/netns") / name


def netns_inode(name: str) -> int | None:
    try:
        return netns_path(name).stat().st_ino
    except OSError:
        return None


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


@asynccontextmanager
async def _host_lock(path: Path) -> AsyncIterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TransientError(f"{path} stayed locked for {_LOCK_TIMEOUT}s") from None
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class NetnsManager:
    def __init__(self, ip_binary: str, network: ipaddress.IPv4Network, lock_path: Path = HOST_LOCK) -> None:
        self.ip = ip_binary
        self.network = network
        self.lock_path = lock_path

    async def _run(self, argv: list[str], error: type[ProviderError] = LaunchError) -> None:
        result = await run_command(argv)
        if result.returncode != 0:
            raise error(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")

    async def create(self, names: NetnsNames) -> NetnsAddresses:
        await self.destroy(names)  # a stale namespace or veth left by a crashed run
        async with _host_lock(self.lock_path):
            listing = await run_command([self.ip, "-j", "-4", "addr", "show"])
            if listing.returncode != 0:
                raise LaunchError(f"`ip -j -4 addr show` failed: {listing.stderr.strip()}")
            slot = pick_slot(addresses_in_use(listing.stdout), self.network)
            if slot is None:
                raise LaunchError(f"every /30 of {self.network} is in use: no address for another replica")
            addrs = slot_addresses(self.network, slot)
            try:
                for argv in setup_commands(self.ip, names, addrs):
                    await self._run(argv)
            except BaseException:
                await asyncio.shield(self.destroy(names))
                raise
        return addrs

    async def destroy(self, names: NetnsNames) -> None:
        """Idempotent. Deleting the namespace deletes its veth end, and so the pair."""
        if netns_path(names.netns).exists():
            await self._run([self.ip, "netns", "del", names.netns], ProviderError)
        for link in (names.veth_host, names.veth_ns):
            if not _link_exists(link):
                continue
            result = await run_command([self.ip, "link", "del", link])
            # The kernel removes a deleted namespace's veth pair asynchronously: it may vanish
            # between the check and the command, which is the outcome we wanted anyway.
            if result.returncode != 0 and _link_exists(link):
                raise ProviderError(f"`ip link del {link}` failed: {result.stderr.strip()}")
