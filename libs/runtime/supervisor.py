"""A small process supervisor: runs the stack's components, restarts a crashed one.

Decisions (when to restart, how long to back off) are pure functions of recorded facts;
the ``Supervisor`` class only does the process I/O. Each component logs to
``<home>/logs/<name>.log``; the supervisor writes ``<home>/run/supervisor.json`` with every
component's pid and restart count so ``stratus local status`` can read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from libs.servers.ports import wait_for_port

BACKOFF_MAX = 30.0
# A process that ran this long is healthy again: its backoff resets.
HEALTHY_AFTER = 60.0


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


class Supervisor:
    def __init__(self, home: Path, components: list[Component]) -> None:
        self.home = home
        self.components = components
        self.stopping = False
        (home / "logs").mkdir(parents=True, exist_ok=True)
        (home / "run").mkdir(parents=True, exist_ok=True)

    @property
    def state_path(self) -> Path:
        return self.home / "run" / "supervisor.json"

    def _start(self, c: Component) -> None:
        log = open(self.home / "logs" / f"{c.name}.log", "ab")  # noqa: SIM115 - child owns it
        env = {**os.environ, **c.env, "STRATUS_COMPONENT": c.name}
        c.proc = subprocess.Popen(
            c.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        c.started_at = time.monotonic()

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
                print(f"supervisor: {c.name} did not listen on {c.ready_port} within 60s", flush=True)
            self.write_state()
        while not self.stopping:
            changed = False
            now = time.monotonic()
            for c in self.components:
                if c.proc is not None and c.proc.poll() is not None:
                    c.last_exit = c.proc.returncode
                    ran_for = now - c.started_at
                    c.proc = None
                    c.next_start_at = now + restart_delay(c.restarts, ran_for)
                    c.restarts += 1
                    print(f"supervisor: {c.name} exited with {c.last_exit}; restarting", flush=True)
                    changed = True
                if c.proc is None and now >= c.next_start_at:
                    self._start(c)
                    changed = True
            if changed:
                self.write_state()
            time.sleep(poll)
        self.stop_all()

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def stop_all(self, grace: float = 10.0) -> None:
        # Stop in reverse order: services before the servers they depend on.
        for c in reversed(self.components):
            if c.proc is not None and c.proc.poll() is None:
                terminate_group(c.proc, grace, c.stop_signal)
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
