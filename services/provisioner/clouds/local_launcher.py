"""The replica side of the local provider: a script, standard library only.

    python -E -s local_launcher.py start <replica_dir>
        Forks the replica's launcher and prints one JSON line once it runs: {"pid", "netns_inode"}
        or {"error"}. The launcher starts a session of its own (so nothing that happens to the
        provisioner's process group reaches the replica), enters its isolation (userns mode: a
        new user + network namespace), raises loopback, starts the unix-socket bridge when asked,
        then runs setup and run with their output in the replica's log, and finally writes the
        exit code to a file: the provisioner is not its parent and cannot wait() for it.
    python -E -s local_launcher.py probe-userns
        Exits 0 if an unprivileged user + network namespace can be made here, else prints why.

Its configuration comes from <replica_dir>/launch.json; the replica's environment (which may
hold secrets) comes only through the process environment. ``-E -s``: PYTHONPATH and friends in
that environment are meant for the replica, not for this script.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: name, then the flags member of its 24-byte union


# --------------------------------------------------------------------------- isolation


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def enter_userns() -> None:
    """Move this (single-threaded) process into a new user + network namespace, mapped to root
    inside like ``unshare --map-root-user``: the replica may then bind ports below 1024 in its
    own namespace, and its files still belong to the real user outside."""
    uid, gid = os.geteuid(), os.getegid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(err)}")
    _write_file("/proc/self/setgroups", "deny")  # required before an unprivileged gid_map
    _write_file("/proc/self/uid_map", f"0 {uid} 1")
    _write_file("/proc/self/gid_map", f"0 {gid} 1")


def raise_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP))


def start_bridge(config: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Listen on the replica's unix socket here, inside the namespace, and hand the listening
    socket to the bridge process: it is accepting before the provisioner hears "started"."""
    path = config["socket"]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a crashed run
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        old_umask = os.umask(0o177)  # only this user (and root) may connect
        try:
            listener.bind(path)
        finally:
            os.umask(old_umask)
        listener.listen(128)
        fd = listener.fileno()
        argv = [sys.executable, "-E", "-s", config["bridge"], str(fd), str(config["port"])]
        return subprocess.Popen(argv, pass_fds=(fd,), stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------- phases


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os.write(1, f"[stratus] {stamp} {message}\n".encode())


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    _write_file(tmp, text)
    os.replace(tmp, path)


class _Phases:
    """Runs setup then run; setup failing means run never starts (as in SkyPilot)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # Pass it on to the running phase and start nothing after it; our exit code then
        # reports how the phase ended.
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def _run_script(self, script: str) -> int:
        try:
            self.child = subprocess.Popen(["bash", script], cwd=self.config["cwd"], stdin=subprocess.DEVNULL)
        except OSError as exc:
            _log(f"cannot start bash: {exc}")
            return 127
        code = self.child.wait()
        return 128 - code if code < 0 else code  # killed by a signal: the shell's convention

    def run(self) -> int:
        code = 0
        for phase in ("setup", "run"):
            script = self.config[phase]
            if script is None:
                continue
            if self.stopping:
                code = 128 + signal.SIGTERM
                break
            _write_atomic(self.config["phase_file"], phase)
            _log(f"===== {phase} started =====")
            code = self._run_script(script)
            _log(f"===== {phase} exited with code {code} =====")
            if code != 0:
                break
        _write_atomic(self.config["exit_code_file"], str(code))
        return code


def _stop_bridge(bridge: subprocess.Popen[bytes] | None, socket_path: str | None) -> None:
    if bridge is not None:
        bridge.terminate()
        try:
            bridge.wait(2)
        except subprocess.TimeoutExpired:
            bridge.kill()
            bridge.wait()
    if socket_path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)


def _report(fd: int, message: dict[str, Any]) -> None:
    os.write(fd, json.dumps(message).encode() + b"\n")
    os.close(fd)


def _launcher(config: dict[str, Any], report_fd: int) -> int:
    log_fd = os.open(config["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    # First of all, let go of the provisioner's pipe: it waits for EOF on it.
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.setsid()
    phases = _Phases(config)
    signal.signal(signal.SIGTERM, phases.on_sigterm)
    bridge = None
    try:
        if config["mode"] == "userns":
            enter_userns()
        raise_loopback()
        if config["socket"] is not None:
            bridge = start_bridge(config)
        inode = os.stat("/proc/self/ns/net").st_ino
    except OSError as exc:
        _log(f"isolation setup failed: {exc}")
        _report(report_fd, {"error": f"isolation setup failed in the replica's launcher: {exc}"})
        _stop_bridge(bridge, None)
        return 1
    _report(report_fd, {"pid": os.getpid(), "netns_inode": inode})
    _log(f"instance {config['instance_id']} started ({config['mode']} isolation)")
    try:
        return phases.run()
    finally:
        _stop_bridge(bridge, config["socket"])


def _await_report(read_fd: int, pid: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return {"error": f"the replica's launcher did not report within {timeout}s"}
        ready, _, _ = select.select([read_fd], [], [], remaining)
        if ready:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            data += chunk
    if not data:
        return {"error": "the replica's launcher exited before it reported (see the replica log)"}
    report: dict[str, Any] = json.loads(data)
    return report


def start(replica_dir: Path) -> int:
    config = json.loads((replica_dir / "launch.json").read_text())
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the launcher; the intermediate exits, so init adopts it
        os.close(read_fd)
        code = 1
        try:
            code = _launcher(config, write_fd)
        except BaseException:
            traceback.print_exc()  # into the replica log, where the "see the log" error points
        finally:
            os._exit(code)  # never run the parent's cleanup in a forked child
    os.close(write_fd)
    report = _await_report(read_fd, pid, float(config["report_timeout"]))
    print(json.dumps(report), flush=True)
    return 0 if "pid" in report else 1


def probe_userns() -> int:
    try:
        enter_userns()
        raise_loopback()
    except OSError as exc:
        print(exc, flush=True)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv[1:2] == ["probe-userns"]:
        return probe_userns()
    if argv[1:2] == ["start"] and len(argv) == 3:
        return start(Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
