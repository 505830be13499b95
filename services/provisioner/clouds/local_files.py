"""A local replica's files: its private copy of the workdir plus file mounts.

``plan_copies`` checks the task's paths (pure); ``materialize`` does the copying (blocking:
call it in a thread). Destinations are relative to the replica's working directory: several
replicas share this machine, so none may write to an absolute path such as /data.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .base import LaunchTask
from .errors import LaunchError

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class CopyPlan:
    workdir: Path | None
    # (local source, destination relative to the replica's working directory)
    mounts: tuple[tuple[Path, PurePosixPath], ...] = ()


def _local_source(what: str, src: str, problems: list[str]) -> Path | None:
    if _URI.match(src):
        problems.append(f"{what} {src!r} is remote: the local provider copies only local paths")
        return None
    path = Path(src).expanduser()
    if not path.is_absolute():
        problems.append(f"{what} {src!r} is relative: resolve it (against the service YAML) first")
        return None
    return path


def _destination(src: str, dest: str, problems: list[str]) -> PurePosixPath | None:
    if _URI.match(dest):
        problems.append(
            f"file_mounts destination {dest!r} is a URI: file_mounts here maps local source -> "
            "destination (swap the pair?)"
        )
        return None
    rel = dest[2:] if dest.startswith("~/") else dest
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or not rel.strip("/."):
        problems.append(
            f"file_mounts destination {dest!r} (from {src!r}) must be relative or under ~/: a local "
            "replica's files live in its own working directory, not at absolute paths"
        )
        return None
    return path


def plan_copies(task: LaunchTask) -> CopyPlan:
    problems: list[str] = []
    workdir = _local_source("workdir", task.workdir, problems) if task.workdir is not None else None
    mounts: list[tuple[Path, PurePosixPath]] = []
    for src, dest in task.file_mounts.items():
        src_path = _local_source("file_mounts source", src, problems)
        dest_path = _destination(src, dest, problems)
        if src_path is not None and dest_path is not None:
            mounts.append((src_path, dest_path))
    if problems:
        raise LaunchError("; ".join(problems))
    return CopyPlan(workdir=workdir, mounts=tuple(mounts))


def materialize(plan: CopyPlan, target: Path) -> None:
    """Make ``target`` a fresh copy of the workdir (or an empty dir) with the mounts inside."""
    try:
        if target.exists():
            shutil.rmtree(target)
        if plan.workdir is None:
            target.mkdir(parents=True)
        elif plan.workdir.is_dir():
            # symlinks=True: copy links as links rather than pulling in what they point to.
            shutil.copytree(plan.workdir, target, symlinks=True)
        else:
            raise LaunchError(f"workdir {str(plan.workdir)!r} is not a directory")
        for src, rel in plan.mounts:
            dest = target / rel
            if src.is_dir():
                shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
            elif src.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
            else:
                raise LaunchError(f"file_mounts source {str(src)!r} does not exist")
    except OSError as exc:
        raise LaunchError(f"copying the replica's files into {target} failed: {exc}") from exc
