"""Where the local provider keeps things, and how instance ids are spelled (pure).

<state_dir>/replicas/<service>-<replica_id>/   one replica: record.json, launch.json,
                                               setup.sh, run.sh, phase, exit_code, workdir/
<state_dir>/logs/<service>/replica-<id>.log    its setup and run output (kept after the end)
<state_dir>/sockets/<service>-<id>.sock        its unix-socket bridge (userns mode)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .errors import LaunchError

# Service names become path components and part of instance ids: keep them to a safe alphabet.
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_INSTANCE_ID = re.compile(r"(?P<service>.+)-(?P<replica>\d+)-(?P<token>[0-9a-f]{8})")

# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


@dataclass(frozen=True)
class ReplicaPaths:
    root: Path
    record: Path
    launch_config: Path
    setup_script: Path
    run_script: Path
    phase: Path
    exit_code: Path
    workdir: Path
    log: Path


def check_service_name(service: str) -> None:
    if not _SERVICE_NAME.fullmatch(service) or ".." in service:
        raise LaunchError(
            f"service name {service!r} cannot name a local replica: use letters, digits, '-', '_' "
            "or '.', starting with a letter or digit, at most 63 characters"
        )


def check_replica_id(replica_id: int) -> None:
    if replica_id < 0:
        raise LaunchError(f"replica id {replica_id} is negative")


def replica_key(service: str, replica_id: int) -> str:
    return f"{service}-{replica_id}"


def paths_under(root: Path, *, record: str, log: Path) -> ReplicaPaths:
    """One sandbox's files under ``root`` (a replica's, or a worker node's: ``local_nodes``)."""
    return ReplicaPaths(
        root=root,
        record=root / record,
        launch_config=root / "launch.json",
        setup_script=root / "setup.sh",
        run_script=root / "run.sh",
        phase=root / "phase",
        exit_code=root / "exit_code",
        workdir=root / "workdir",
        log=log,
    )


def replica_paths(state_dir: Path, service: str, replica_id: int) -> ReplicaPaths:
    root = state_dir / "replicas" / replica_key(service, replica_id)
    log = state_dir / "logs" / service / f"replica-{replica_id}.log"
    return paths_under(root, record="record.json", log=log)


def new_instance_id(service: str, replica_id: int, token: str) -> str:
    """``<service>-<replica_id>-<8 hex>``: the token tells a relaunch of the same replica apart."""
    return f"{replica_key(service, replica_id)}-{token}"


def parse_instance_id(instance_id: str) -> tuple[str, int] | None:
    """(service, replica_id) of a well-formed id, else None."""
    m = _INSTANCE_ID.fullmatch(instance_id)
    if m is None or not _SERVICE_NAME.fullmatch(m["service"]):
        return None
    return m["service"], int(m["replica"])


def socket_path(state_dir: Path, service: str, replica_id: int, fallback_dir: Path) -> Path:
    """The bridge socket: in the state dir when its path fits in sun_path, else a short hashed
    name in ``fallback_dir`` (a deep state dir, e.g. under pytest's tmp_path, can be too long)."""
    preferred = state_dir / "sockets" / f"{replica_key(service, replica_id)}.sock"
    if len(bytes(preferred)) <= MAX_SOCKET_PATH_BYTES:
        return preferred
    digest = hashlib.sha256(bytes(preferred)).hexdigest()[:20]
    short = fallback_dir / f"{digest}.sock"
    if len(bytes(short)) > MAX_SOCKET_PATH_BYTES:
        raise LaunchError(
            f"no unix socket path short enough (<= {MAX_SOCKET_PATH_BYTES} bytes) for replica "
            f"{replica_key(service, replica_id)}: use a shorter state_dir than {state_dir}"
        )
    return short


def unix_socket_url(path: Path) -> str:
    """``http+unix://`` with the whole socket path percent-encoded as the host."""
    return "http+unix://" + quote(str(path), safe="")
