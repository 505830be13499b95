"""Finding and stopping every process of a local replica.

A replica's processes are found four ways, because each alone misses some: the instance
marker in the environment (which every process inherits, even an orphan re-parented to init),
its process group (the launcher is a session leader), membership of its network namespace
(an orphan that also cleared its environment) and descent from any of those. ``select_members`` is
the pure part; the rest reads /proc through psutil and blocks: call it in a thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from .local_env import INSTANCE_MARKER

_POLL = 0.05


@dataclass(frozen=True)
class ProcFacts:
    pid: int
    ppid: int
    pgid: int | None
    marker: str | None  # the instance marker in its environment, if readable
    netns_inode: int | None


def select_members(
    procs: Iterable[ProcFacts],
    *,
    marker: str,
    pgid: int | None,
    netns_inode: int | None,
    own_pgid: int,
    own_netns: int | None,
    exclude: frozenset[int] = frozenset(),
) -> set[int]:
    """The pids of one replica. A process group or namespace counts only while one of its
    members carries the marker: after all of a replica's processes are gone, its pgid and
    namespace inode may be reused by strangers. Our own group and namespace never count, so a
    bad record cannot turn this into "every process on the host"."""
    procs = list(procs)
    marked = {p.pid for p in procs if p.marker == marker}
    groups = {p.pgid for p in procs if p.pid in marked} & ({pgid} - {None, own_pgid})
    spaces = {p.netns_inode for p in procs if p.pid in marked} & ({netns_inode} - {None, own_netns})
    chosen = marked | {p.pid for p in procs if p.pgid in groups or p.netns_inode in spaces}
    children: dict[int, list[int]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p.pid)
    todo = list(chosen)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in chosen:
                chosen.add(child)
                todo.append(child)
    return chosen - exclude - {0, 1}


def _facts(proc: psutil.Process) -> ProcFacts | None:
    try:
        pid = proc.pid
        ppid = proc.ppid()
        try:
            marker = proc.environ().get(INSTANCE_MARKER)
        except psutil.AccessDenied:  # another user's process: not ours to find
            marker = None
        try:
            pgid: int | None = os.getpgid(pid)
            inode: int | None = os.stat(f"/proc/{pid}/ns/net").st_ino
        except (ProcessLookupError, PermissionError, FileNotFoundError):
            pgid, inode = None, None
        return ProcFacts(pid=pid, ppid=ppid, pgid=pgid, marker=marker, netns_inode=inode)
    except psutil.NoSuchProcess:
        return None


def find_members(*, marker: str, pgid: int | None, netns_inode: int | None) -> dict[int, psutil.Process]:
    procs = {p.pid: p for p in psutil.process_iter()}
    facts = [f for f in map(_facts, procs.values()) if f is not None]
    me = psutil.Process()
    members = select_members(
        facts,
        marker=marker,
        pgid=pgid,
        netns_inode=netns_inode,
        own_pgid=os.getpgid(0),
        own_netns=os.stat("/proc/self/ns/net").st_ino,
        exclude=frozenset({me.pid, *(p.pid for p in me.parents())}),
    )
    return {pid: procs[pid] for pid in members}


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _signal_all(procs: Iterable[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)  # psutil refuses if the pid was reused meanwhile


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not _gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(_POLL)
        alive = [p for p in alive if not _gone(p)]
    return alive


def stop_members(
    *,
    marker: str,
    pgid: int | None,
    netns_inode: int | None,
    grace_seconds: float,
    kill_timeout: float = 5.0,
    rounds: int = 3,
) -> list[int]:
    """SIGTERM every member, wait up to the grace period, then SIGKILL what is left (and what
    appeared meanwhile), a bounded number of rounds. Returns the pids that survived."""
    members = find_members(pgid=pgid, marker=marker, netns_inode=netns_inode)
    _signal_all(members.values(), signal.SIGTERM)
    _wait_gone(list(members.values()), grace_seconds)
    survivors: list[psutil.Process] = []
    for _ in range(rounds):
        members = find_members(pgid=pgid, marker=marker, netns_inode=netns_inode)
        live = [p for p in members.values() if not _gone(p)]
        if not live:
            return []
        _signal_all(live, signal.SIGKILL)
        survivors = _wait_gone(live, kill_timeout)
    return [p.pid for p in survivors]


def launcher_alive(pid: int, started_at: float) -> bool:
    """Whether ``pid`` is still the launcher we started (not exited, not a reused pid)."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started_at) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return 0.0
