"""`stratus spec check`: summary, --json, --env, exit codes and messages on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from spec_helpers import EXAMPLES, variant
from typer.testing import CliRunner

from libs.spec import launch
from services.api.cli_spec import spec_app

runner = CliRunner()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "svc.yaml"
    path.write_text(text)
    return path


def test_check_prints_summary() -> None:
    result = runner.invoke(spec_app, ["check", str(EXAMPLES / "hello-sky-serve.yaml")])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "OK: service hello-sky-serve: 2 replicas, port 8080, probe GET /"


def test_check_autoscaling_summary_uses_name() -> None:
    result = runner.invoke(spec_app, ["check", str(EXAMPLES / "vllm-mixtral-autoscaling.yaml")])
    assert result.exit_code == 0
    assert "0-10 replicas at 2.5 qps each, port 8080, probe POST /v1/chat/completions" in result.stdout
    assert "any of L4:8 | A10G:8" in result.stdout


def test_check_json_output(tmp_path: Path) -> None:
    text = variant(name="web", secrets={"API_KEY": None}, envs={"MODEL": "m"})
    path = _write(tmp_path, text)
    result = runner.invoke(
        spec_app, ["check", str(path), "--json", "--env", "API_KEY=topsecret", "--env", "X=1"]
    )
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["name"] == "web"
    assert out["service"]["readiness_path"] == "/health"
    assert (out["service"]["min_replicas"], out["service"]["max_replicas"]) == (2, 2)
    assert out["service"]["target_qps_per_replica"] is None
    assert out["service"]["load_balancing_policy"] == "least_load"
    assert out["resources"]["ports"] == [8080]
    assert out["envs"] == {"MODEL": "m", "X": "1"}
    assert out["secrets"] == {"API_KEY": "<redacted>"}
    assert "topsecret" not in result.output


def test_invalid_file_exits_1_with_fields_on_stderr(tmp_path: Path) -> None:
    path = _write(tmp_path, variant(service__replicas=-1, resources__cloud="gpc"))
    result = runner.invoke(spec_app, ["check", str(path), "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "service.replicas" in result.stderr and "at least 0" in result.stderr
    assert "resources.cloud" in result.stderr and "did you mean gcp?" in result.stderr


def test_missing_env_value_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, variant(envs={"HF_TOKEN": None}))
    result = runner.invoke(spec_app, ["check", str(path)])
    assert result.exit_code == 1
    assert "envs.HF_TOKEN" in result.stderr
    assert runner.invoke(spec_app, ["check", str(path), "--env", "HF_TOKEN=x"]).exit_code == 0


def test_malformed_env_option(tmp_path: Path) -> None:
    result = runner.invoke(spec_app, ["check", str(EXAMPLES / "tabby.yaml"), "--env", "NOEQUALS"])
    assert result.exit_code == 1
    assert "KEY=VALUE" in result.stderr


def test_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(spec_app, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "nope.yaml: no such file" in result.stderr


def test_syntax_error_shows_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "service:\n  replicas: 2\n readiness_probe: /\n")
    result = runner.invoke(spec_app, ["check", str(path)])
    assert result.exit_code == 1
    assert "line 3, column 2" in result.stderr


def test_mounted_on_the_stratus_cli() -> None:
    from services.api.cli import app

    result = runner.invoke(app, ["spec", "check", str(EXAMPLES / "tgi-vicuna.yaml")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: service tgi-vicuna: 2 replicas, port 8080, probe GET /health")


def test_check_warns_that_up_may_refuse_num_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_aws = _write(tmp_path, variant(num_nodes=2, resources__cloud="aws"))
    every = runner.invoke(spec_app, ["check", str(on_aws)])
    assert every.exit_code == 0 and "warning" not in every.stderr  # every provider launches it
    monkeypatch.setattr(launch, "MULTI_NODE_CLOUDS", ("local",))  # a provider without multi-node
    path = _write(tmp_path, variant(num_nodes=2, resources__cloud="aws"))
    result = runner.invoke(spec_app, ["check", str(path)])
    assert result.exit_code == 0, result.output  # a valid SkyServe spec
    assert result.stdout.startswith("OK: ")
    assert "warning: num_nodes" in result.stderr and "aws" in result.stderr
    single = runner.invoke(spec_app, ["check", str(_write(tmp_path, variant(resources__cloud="aws")))])
    assert "warning" not in single.stderr
