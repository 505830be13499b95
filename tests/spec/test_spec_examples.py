"""Every example YAML (extracted from SkyServe's docs and blogs) parses, with the meaning intended."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_helpers import EXAMPLES, REPO

from libs.spec import load_spec_file, spec_from_dict, spec_to_dict

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_examples_exist() -> None:
    assert len(EXAMPLE_FILES) >= 15


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.name for p in EXAMPLE_FILES])
def test_example_parses_and_round_trips(path: Path) -> None:
    spec = load_spec_file(path)
    assert spec.service_port in spec.resources.candidates()[0].ports
    assert spec.run.strip()
    assert spec_from_dict(spec_to_dict(spec, include_secrets=True)) == spec


def test_hello_sky_serve_is_the_tutorial() -> None:
    spec = load_spec_file(EXAMPLES / "hello-sky-serve.yaml")
    assert spec.readiness_probe.path == "/"
    assert spec.readiness_probe.method == "GET"
    assert (spec.min_replicas, spec.max_replicas, spec.is_autoscaling) == (2, 2, False)
    assert spec.service_port == 8080
    assert spec.resources.cpus == "2"
    assert spec.run == "python -m http.server 8080"
    assert spec.workdir is not None
    assert "Hello, SkyServe!" in (REPO / spec.workdir / "index.html").read_text()


def test_mixtral_accelerator_set_becomes_candidates() -> None:
    spec = load_spec_file(EXAMPLES / "vllm-mixtral.yaml")
    accelerators = [c.accelerators for c in spec.resources.candidates()]
    assert accelerators == [
        {"L4": 8},
        {"A10G": 8},
        {"A100": 4},
        {"A100": 8},
        {"A100-80GB": 2},
        {"A100-80GB": 4},
        {"A100-80GB": 8},
    ]
    assert spec.resources.accelerators is None
    assert not spec.resources.ordered
    assert all(c.ports == [8080] for c in spec.resources.candidates())


def test_mixtral_autoscaling_and_post_probe() -> None:
    spec = load_spec_file(EXAMPLES / "vllm-mixtral-autoscaling.yaml")
    svc = spec.service
    assert (svc.min_replicas, svc.max_replicas, svc.target_qps_per_replica) == (0, 10, 2.5)
    assert spec.is_autoscaling
    probe = spec.readiness_probe
    assert probe.method == "POST"
    assert probe.path == "/v1/chat/completions"
    assert probe.initial_delay_seconds == 1800
    assert probe.post_data == {
        "model": "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "messages": [{"role": "user", "content": "Hello! What is your name?"}],
        "max_tokens": 1,
    }
    assert (svc.upscale_delay_seconds, svc.downscale_delay_seconds) == (300, 1200)


def test_llama3_spot_with_bare_accelerator_set() -> None:
    spec = load_spec_file(EXAMPLES / "vllm-llama3-8b-autoscaling.yaml")
    candidates = spec.resources.candidates()
    assert [c.accelerators for c in candidates][:2] == [{"L4": 1}, {"A10G": 1}]
    assert all(c.use_spot and c.disk_size == 512 and c.disk_tier == "best" for c in candidates)
    assert (spec.min_replicas, spec.max_replicas, spec.service.target_qps_per_replica) == (2, 4, 2.0)
    assert spec.envs["MODEL_NAME"] == "meta-llama/Meta-Llama-3-8B-Instruct"


def test_codellama_memory_and_vicuna_envs() -> None:
    codellama = load_spec_file(EXAMPLES / "codellama-70b.yaml")
    assert codellama.resources.memory == "32+"
    assert codellama.readiness_probe.post_data == {
        "model": "codellama/CodeLlama-70b-Instruct-hf",
        "prompt": "def hello_world():",
        "max_tokens": 1,
    }
    vicuna = load_spec_file(EXAMPLES / "vicuna-chatbot.yaml")
    assert vicuna.envs == {"MODEL_SIZE": "7"}  # a YAML number, passed as SkyPilot does
    assert vicuna.min_replicas == 3
    assert vicuna.resources.accelerators == {"A100": 1}


def test_tgi_accelerator_without_count() -> None:
    spec = load_spec_file(EXAMPLES / "tgi-vicuna.yaml")
    assert spec.resources.accelerators == {"A100": 1}
    assert spec.readiness_probe.path == "/health"
