"""Size-bounded rotation of the component logs the supervisor writes.

A component writes its stdout/stderr straight into ``<home>/logs/<name>.log`` (an ``O_APPEND``
descriptor it keeps for its whole life), so the file cannot be renamed under it: the supervisor
rotates by copy and truncate instead (logrotate's ``copytruncate``). The copy becomes ``.1``
(older copies shift to ``.2`` .. ``.<backups>``, the oldest is dropped); the truncation lets
the component go on appending at offset 0, since every append goes to the file's end. Lines
written between the copy and the truncation are lost (a few, at most, per rotation), the price
of not owning the component's descriptor. Readers that follow the file (``stratus logs -f``)
see it shrink and start again from the top.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def backup_path(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def needs_rotation(size: int, max_bytes: int) -> bool:
    return max_bytes > 0 and size >= max_bytes


def rotate_copytruncate(path: Path, backups: int) -> None:
    """Shift ``path.1..`` up by one (dropping the oldest), copy ``path`` to ``path.1``, truncate."""
    for n in range(backups - 1, 0, -1):
        older = backup_path(path, n)
        if older.exists():
            older.replace(backup_path(path, n + 1))
    shutil.copyfile(path, backup_path(path, 1))
    os.truncate(path, 0)


def rotate_if_large(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` if it has grown to ``max_bytes``; True if it was rotated."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if not needs_rotation(size, max_bytes):
        return False
    rotate_copytruncate(path, backups)
    return True
