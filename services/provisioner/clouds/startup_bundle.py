"""The workdir and file mounts a startup script carries inline, as one gzipped tarball (pure I/O
of reading local files; no network).

Layout inside the tarball: ``workdir/...`` (the workdir's contents, ``.git`` left out) and
``mounts/<i>`` (the i-th file mount's file or directory). The script unpacks it and copies each
mount to its destination: absolute as given, ``~/x`` or relative under the instance's $HOME.
"""

from __future__ import annotations

import base64
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .base import LaunchTask
from .errors import LaunchError

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class Mount:
    index: int
    destination: str  # as the script should write it: absolute, or relative to $HOME
    is_dir: bool


@dataclass(frozen=True)
class Bundle:
    tarball_b64: str  # "" when there is nothing to carry
    has_workdir: bool
    mounts: tuple[Mount, ...]


def _skip_git(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if "/.git/" in f"/{info.name}/" else info


def _source(what: str, src: str) -> Path:
    if _URI.match(src):
        raise LaunchError(
            f"{what} {src!r} is a remote URI: cloud replicas here carry only local files (copy it "
            "in the task's setup instead, e.g. with `aws s3 cp` / `gsutil cp`)"
        )
    path = Path(src).expanduser()
    if not path.is_absolute():
        raise LaunchError(f"{what} {src!r} is relative: resolve it (against the service YAML) first")
    if not path.exists():
        raise LaunchError(f"{what} {src!r} does not exist on the control plane")
    return path


def _destination(src: str, dest: str) -> str:
    if _URI.match(dest) or not dest.strip() or ".." in Path(dest).parts or "\n" in dest:
        raise LaunchError(f"file_mounts destination {dest!r} (from {src!r}) is not a usable path")
    return dest[2:] if dest.startswith("~/") else dest


def build_bundle(task: LaunchTask) -> Bundle:
    """Read the task's workdir and file mounts into one tarball (blocking: call in a thread)."""
    buf = io.BytesIO()
    mounts: list[Mount] = []
    has_workdir = False
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=9) as tar:
        if task.workdir is not None:
            root = _source("workdir", task.workdir)
            if not root.is_dir():
                raise LaunchError(f"workdir {task.workdir!r} is not a directory")
            tar.add(root, arcname="workdir", filter=_skip_git)
            has_workdir = True
        for i, (src, dest) in enumerate(sorted(task.file_mounts.items())):
            path = _source("file_mounts source", src)
            mounts.append(Mount(index=i, destination=_destination(src, dest), is_dir=path.is_dir()))
            tar.add(path, arcname=f"mounts/{i}", filter=_skip_git)
    if not has_workdir and not mounts:
        return Bundle(tarball_b64="", has_workdir=False, mounts=())
    return Bundle(base64.b64encode(buf.getvalue()).decode(), has_workdir, tuple(mounts))
