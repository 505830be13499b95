"""A small process supervisor: runs the stack's components, restarts a crashed one.

Decisions (when to restart, how long to back off) are pure functions of recorded facts;
the ``Supervisor`` class only does the process I/O. Each component logs to
``<home>/logs/<name>.log``, rotated by size (``logrotate.py``); the supervisor logs what it
does (starts, exits, restarts with their backoff, stops) to ``<home>/logs/supervisor.log``
(``supervisor_log_handler``), and writes ``<home>/run/supervisor.json`` with every component's
pid and restart count so ``stratus local status`` can read it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from libs.servers.ports import wait_for_port

from .logrotate import rotate_if_large

log = logging.getLogger("stratus.supervisor")

BACKOFF_MAX = 30.0
# A process that ran this long is healthy again: its backoff resets.
HEALTHY_AFTER = 60.0
# How often component log sizes are checked (seconds).
ROTATE_CHECK_EVERY = 1.0


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start_at: float = 0.0
    last_exit: int | None = None
    # (host, port) that answers once the component is up; later components wait for it.
    ready_port: tuple[str, int] | None = None
    # Postgres wants SIGINT for a fast shutdown; SIGTERM would wait for every client.
    stop_signal: int = signal.SIGTERM


def restart_delay(restarts: int, ran_for: float) -> float:
    """Exponential backoff from 0.5 s, reset after a long healthy run."""
    if ran_for >= HEALTHY_AFTER:
        return 0.5
    return float(min(BACKOFF_MAX, 0.5 * (2 ** min(restarts, 8))))


def supervisor_log_handler(path: Path, max_bytes: int, backups: int) -> logging.Handler:
    """The supervisor's own log: a size-rotated file (it is the file's only logging writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s supervisor: %(message)s"))
    return handler


class Supervisor:
    def __init__(
        self, home: Path, components: list[Component], *, log_max_bytes: int = 10_000_000,
        log_backups: int = 3,
    ) -> None:  # fmt: skip
        self.home = home
        self.components = components
        self.stopping = False
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self._rotate_checked_at = 0.0
        (home / "logs").mkdir(parents=True, exist_ok=True)
        (home / "run").mkdir(parents=True, exist_ok=True)

    def log_path(self, c: Component) -> Path:
        return self.home / "logs" / f"{c.name}.log"

    @property
    def state_path(self) -> Path:
        return self.home / "run" / "supervisor.json"

    def _start(self, c: Component) -> None:
        out = open(self.log_path(c), "ab")  # noqa: SIM115 - child owns it
        env = {**os.environ, **c.env, "STRATUS_COMPONENT": c.name}
        c.proc = subprocess.Popen(
            c.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )  # fmt: skip
        out.close()
        c.started_at = time.monotonic()
        log.info("started %s (pid %d, %d restarts so far)", c.name, c.proc.pid, c.restarts)

    def rotate_logs(self, now: float) -> None:
        """Rotate every component log that has grown past ``log_max_bytes`` (checked each second)."""
        if now - self._rotate_checked_at < ROTATE_CHECK_EVERY:
            return
        self._rotate_checked_at = now
        for c in self.components:
            path = self.log_path(c)
            try:
                if rotate_if_large(path, self.log_max_bytes, self.log_backups):
                    log.info("rotated %s (over %d bytes)", path.name, self.log_max_bytes)
            except OSError as exc:  # a full disk must not stop the supervisor
                log.warning("could not rotate %s: %s", path.name, exc)

    def write_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "components": {
                c.name: {
                    "pid": c.proc.pid if c.proc is not None and c.proc.poll() is None else None,
                    "restarts": c.restarts,
                    "last_exit": c.last_exit,
                    "argv": c.argv,
                }
                for c in self.components
            },
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)

    def run(self, poll: float = 0.2) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for c in self.components:
            if self.stopping:
                break
            self._start(c)
            if c.ready_port is not None and not wait_for_port(*c.ready_port, timeout=60):
                log.warning("%s did not listen on %s:%d within 60s", c.name, *c.ready_port)
            self.write_state()
        while not self.stopping:
            changed = False
            now = time.monotonic()
            for c in self.components:
                if c.proc is not None and c.proc.poll() is not None:
                    c.last_exit = c.proc.returncode
                    ran_for = now - c.started_at
                    c.proc = None
                    delay = restart_delay(c.restarts, ran_for)
                    c.next_start_at = now + delay
                    c.restarts += 1
                    log.warning(
                        "%s exited with %s after %.1fs; restarting in %.1fs (restart %d)",
                        c.name, c.last_exit, ran_for, delay, c.restarts,
                    )  # fmt: skip
                    changed = True
                if c.proc is None and now >= c.next_start_at:
                    self._start(c)
                    changed = True
            if changed:
                self.write_state()
            self.rotate_logs(now)
            time.sleep(poll)
        log.info("stopping every component")
        self.stop_all()
        log.info("stopped")

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def stop_all(self, grace: float = 10.0) -> None:
        # Stop in reverse order: services before the servers they depend on.
        for c in reversed(self.components):
            if c.proc is not None and c.proc.poll() is None:
                terminate_group(c.proc, grace, c.stop_signal)
                log.info("stopped %s (exit %s)", c.name, c.proc.returncode)
            c.proc = None
        self.write_state()


def terminate_group(proc: subprocess.Popen[bytes], grace: float, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
