"""The supervisor: restarts logged with their backoff, component logs rotated by size."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from libs.runtime.logrotate import backup_path, needs_rotation, rotate_copytruncate, rotate_if_large

ROOT = Path(__file__).resolve().parents[2]

SUPERVISE = """
import logging, sys
from pathlib import Path
from libs.runtime.supervisor import Component, Supervisor, supervisor_log_handler

home = Path(sys.argv[1])
handler = supervisor_log_handler(home / "logs" / "supervisor.log", 1_000_000, 2)
logging.basicConfig(level="INFO", handlers=[handler])
chatty = [sys.executable, "-c", (
    "import time\\n"
    "i = 0\\n"
    "while True:\\n"
    "    print(f'{i:08d} ' + 'y' * 990, flush=True)\\n"
    "    i += 1\\n"
    "    time.sleep(0.01)\\n"
)]
crasher = [sys.executable, "-c", "print('crashing'); raise SystemExit(3)"]
components = [Component("chatty", chatty), Component("crasher", crasher)]
Supervisor(home, components, log_max_bytes=20_000, log_backups=2).run(poll=0.05)
"""


def wait_until(cond: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        time.sleep(0.05)


def test_rotation_keeps_a_bounded_number_of_copies_newest_first(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    assert not rotate_if_large(log, 10, 2)  # no file yet: nothing to do
    with open(log, "ab") as writer:  # what a component holds: one O_APPEND descriptor
        for n in range(4):
            writer.write(f"generation {n}\n".encode() * 10)
            writer.flush()
            assert rotate_if_large(log, 100, 2)
            assert log.stat().st_size == 0
        writer.write(b"after\n")
        writer.flush()
    # The writer went on at the start of the truncated file (no hole of NULs before it).
    assert log.read_bytes() == b"after\n"
    assert backup_path(log, 1).read_text().startswith("generation 3")
    assert backup_path(log, 2).read_text().startswith("generation 2")
    assert not backup_path(log, 3).exists()
    assert not rotate_if_large(log, 100, 2)  # small again: left alone


def test_needs_rotation() -> None:
    assert [needs_rotation(s, 100) for s in (0, 99, 100, 5000)] == [False, False, True, True]
    assert not needs_rotation(10**9, 0)  # 0: rotation off


def test_one_backup_is_the_latest_copy(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    for n in range(3):
        log.write_text(f"run {n}\n")
        rotate_copytruncate(log, 1)
    assert backup_path(log, 1).read_text() == "run 2\n" and not backup_path(log, 2).exists()


def test_supervisor_logs_restarts_and_rotates_component_logs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    logs = home / "logs"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISE, str(home)], cwd=ROOT, env=env)
    own = logs / "supervisor.log"

    def own_log() -> str:
        return own.read_text() if own.exists() else ""

    try:
        wait_until(lambda: own_log().count("crasher exited with 3") >= 2, 30, "two restarts logged")
        wait_until(lambda: own_log().count("rotated chatty.log") >= 4, 60, "four rotations")
        text = own_log()
        assert "started chatty (pid" in text and "started crasher (pid" in text
        # The backoff is logged, and grows from one restart to the next.
        delays = [float(line.split("restarting in ")[1].split("s")[0])
                  for line in text.splitlines() if "crasher exited with 3" in line]  # fmt: skip
        assert delays[:2] == [0.5, 1.0]
        # At most the log and its two copies; the oldest lines are gone; copies are in order.
        files = sorted(p.name for p in logs.glob("chatty.log*"))
        assert files == ["chatty.log", "chatty.log.1", "chatty.log.2"]
        firsts = [int(backup_path(logs / "chatty.log", n).read_text()[:8]) for n in (2, 1)]
        assert 0 < firsts[0] < firsts[1]
        assert b"\x00" not in (logs / "chatty.log").read_bytes()
    finally:
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(30) == 0
    text = own_log()
    assert "stopping every component" in text and text.rstrip().endswith("stopped")
