"""``python -m bench.spot`` end to end on short windows: a synthetic trace folder, and one
window of the paper's AWS1 trace when ../shared/traces is there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AWS1 = ROOT.parent / "shared" / "traces" / "spothedge" / "AWS1"


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.spot", *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )


def write_trace(folder: Path, zones: dict[str, list[int]], gap: int = 300) -> None:
    folder.mkdir(parents=True)
    for zone, data in zones.items():
        (folder / f"{zone}_v100_1.json").write_text(
            json.dumps({"metadata": {"gap_seconds": gap}, "data": data})
        )


def test_json_over_a_synthetic_trace_folder(tmp_path: Path) -> None:
    write_trace(tmp_path / "calm", {"us-east-1a": [4] * 20, "us-east-1b": [4] * 20})
    write_trace(tmp_path / "stormy", {"us-east-1a": [4, 0] * 10, "us-west-2a": [0, 4] * 10})
    r = bench("--traces", str(tmp_path), "--offsets", "0", "--ticks", "120", "--json", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["traces"]) == {"calm", "stormy"}
    calm = out["traces"]["calm"]["policies"]
    assert list(calm)[:4] == ["ondemand", "round_robin", "skyserve", "stratus"]
    for entry in calm.values():
        assert {"cost_ratio", "availability", "windows"} <= set(entry)
    assert calm["ondemand"]["cost_ratio"] == 1.0
    # Calm spot: every policy keeps the service up from the cold start on, spot is cheaper.
    assert calm["round_robin"]["availability"] == 1.0
    assert calm["round_robin"]["cost_ratio"] == pytest.approx(1 / 3, abs=1e-3)
    assert calm["skyserve"]["cost_ratio"] > calm["stratus"]["cost_ratio"]
    # Zones that alternate every 10 ticks preempt: the fallback policies stay up, RR does not.
    stormy = out["traces"]["stormy"]["policies"]
    assert stormy["round_robin"]["preemptions"] > 0
    assert stormy["round_robin"]["availability"] < stormy["skyserve"]["availability"]
    assert out["setup"] == {
        "tick_seconds": 30.0, "ticks": 120, "target": 3, "cold_start_ticks": 4, "protocol_windows": False,
    }  # fmt: skip
    # HiGHS is in the test extra: the offline optimum is solved (all spot in a calm trace).
    assert calm["optimum"]["cost_ratio"] == pytest.approx(1 / 3, abs=1e-3)


def test_table_over_one_short_window_of_the_paper_trace() -> None:
    if not AWS1.is_dir():
        pytest.skip(f"no paper traces at {AWS1} (../shared/traces)")
    r = bench("--traces", str(AWS1), "--offsets", "2732", "--ticks", "300", "--no-optimum",
              "--policy", "skyserve", "--policy", "stratus")  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["trace", "policy", "cost", "avail"]
    assert [ln.split()[1] for ln in lines[1:4]] == ["ondemand", "skyserve", "stratus"]
    assert len(lines) == 5 and lines[4].startswith("simulation ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--offsets", "1,x"], "--offsets wants comma-separated tick numbers"),
        (["--windows", "0"], "want a number >= 1"),
        (["--offsets", "1", "--windows", "2"], "--offsets and --windows both choose windows"),
        (["--policy", "best"], "invalid choice: 'best'"),
        (["--ticks", "4"], "--ticks (4) must exceed --cold-start (4)"),
        (["--traces", "/nonexistent-spot-traces"], "/nonexistent-spot-traces: not a folder"),
    ],
)
def test_bad_input_names_what_is_wrong(args: list[str], message: str) -> None:
    r = bench(*args)
    assert r.returncode == 2
    assert message in r.stderr


def test_a_zone_file_that_is_not_a_trace_is_refused(tmp_path: Path) -> None:
    write_trace(tmp_path / "t", {"us-east-1a": [1, 2]})
    (tmp_path / "t" / "us-east-1b_v100_1.json").write_text('{"metadata": {}, "data": [1]}')
    r = bench("--traces", str(tmp_path / "t"), "--offsets", "0", "--ticks", "10")
    assert r.returncode == 2
    assert "us-east-1b_v100_1.json: metadata.gap_seconds must be a positive number" in r.stderr
