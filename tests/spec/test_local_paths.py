from pathlib import Path

import yaml

from libs.spec.local_paths import resolve_local_paths


def test_relative_workdir_and_mounts_become_absolute(tmp_path: Path) -> None:
    text = "run: x\nworkdir: app\nfile_mounts:\n  /data: ./data\n  /ckpt: s3://bucket/ckpt\n"
    out = yaml.safe_load(resolve_local_paths(text, tmp_path))
    assert out["workdir"] == str(tmp_path / "app")
    assert out["file_mounts"]["/data"] == str(tmp_path / "data")
    assert out["file_mounts"]["/ckpt"] == "s3://bucket/ckpt"


def test_absolute_paths_leave_text_untouched(tmp_path: Path) -> None:
    text = "# keep me\nrun: x\nworkdir: /srv/app\n"
    assert resolve_local_paths(text, tmp_path) == text
