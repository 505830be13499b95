"""Starting a replica's launcher: its files on disk, then the launcher process itself."""

from __future__ import annotations

import json

from .base import LaunchTask
from .errors import LaunchError
from .local_command import run_command
from .local_layout import ReplicaPaths
from .local_probe import BRIDGE, LAUNCHER
from .local_records import InstanceRecord, save_record


def write_launch_files(
    paths: ReplicaPaths, record: InstanceRecord, task: LaunchTask, report_timeout: float
) -> None:
    """The scripts and launch.json the launcher reads (blocking). No env values: they travel
    only in the launcher's environment."""
    scripts = {"setup": (paths.setup_script, task.setup), "run": (paths.run_script, task.run)}
    for path, text in scripts.values():
        if text is not None:
            path.write_text(text)
    config = {
        "instance_id": record.instance_id,
        "mode": record.mode,
        "cwd": str(paths.workdir),
        **{phase: None if text is None else str(path) for phase, (path, text) in scripts.items()},
        "log": str(paths.log),
        "phase_file": str(paths.phase),
        "exit_code_file": str(paths.exit_code),
        "socket": record.socket or None,
        "port": task.service_port,
        "bridge": str(BRIDGE),
        "report_timeout": report_timeout,
    }
    paths.launch_config.write_text(json.dumps(config))
    save_record(paths.record, record)


async def spawn_launcher(
    python: str, paths: ReplicaPaths, env: dict[str, str], prefix: list[str], report_timeout: float
) -> tuple[int, int]:
    """Start the launcher (under ``prefix``, e.g. ``ip netns exec NAME``) and return its pid and
    network namespace inode once it runs isolated; LaunchError with its reason otherwise."""
    argv = [*prefix, python, "-E", "-s", str(LAUNCHER), "start", str(paths.root)]
    result = await run_command(argv, time_limit=report_timeout + 5, env=env)
    lines = result.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        detail = result.stderr.strip()[-1000:] or f"exit code {result.returncode}"
        raise LaunchError(f"the replica's launcher failed to start: {detail}") from None
    if "error" in report:
        raise LaunchError(str(report["error"]))
    return int(report["pid"]), int(report["netns_inode"])
