"""The compose file runs real entry points: each command, run here, does not exit at once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def commands() -> dict[str, list[str]]:
    text = (ROOT / "deploy" / "compose" / "compose.yaml").read_text()
    found: dict[str, list[str]] = {}
    service = ""
    for line in text.splitlines():
        if m := re.match(r"^  ([a-z]+):\s*$", line):
            service = m.group(1)
        if m := re.match(r"^    command: \[(.*)\]", line):
            found[service] = [part.strip().strip('"') for part in m.group(1).split(",")]
    return found


def test_the_relay_command_is_the_relay_entry_point() -> None:
    relay = commands()["relay"]
    assert relay[:3] == ["python", "-m", "libs.events"] and relay[3] == "relay"
    # Run it with --help: argparse of the real entry point answers (a bare module would not).
    out = subprocess.run(
        [sys.executable, *relay[1:], "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "--republish-from" in out.stdout


def test_every_python_command_names_an_importable_module() -> None:
    for name, argv in commands().items():
        if argv[0] != "python":
            continue
        module = argv[2]
        probe = f"import importlib.util as u, sys; sys.exit(0 if u.find_spec({module!r}) else 1)"
        assert subprocess.run([sys.executable, "-c", probe], cwd=ROOT, timeout=60).returncode == 0, name
