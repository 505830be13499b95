"""--env overrides: parsing KEY=VALUE, overriding, filling declared-null envs and secrets."""

from __future__ import annotations

import pytest
from spec_helpers import variant

from libs.spec import EnvOverrideError, SpecValidationError, load_spec, parse_env_overrides


def test_parse_env_overrides() -> None:
    assert parse_env_overrides(["A=1", "B=x=y", "C=", "A=2"]) == {"A": "2", "B": "x=y", "C": ""}
    assert parse_env_overrides([]) == {}


@pytest.mark.parametrize(
    ("item", "keyword"), [("HF_TOKEN", "KEY=VALUE"), ("=x", "not a valid"), ("1A=x", "not a valid")]
)
def test_parse_env_overrides_rejects(item: str, keyword: str) -> None:
    with pytest.raises(EnvOverrideError) as info:
        parse_env_overrides(["OK=1", item])
    assert keyword in str(info.value)
    assert [i.path for i in info.value.issues] == ["--env"]


def test_override_replaces_and_adds() -> None:
    spec = load_spec(variant(envs={"MODEL_ID": "a", "N": 1}), env_overrides={"MODEL_ID": "b", "EXTRA": "c"})
    assert spec.envs == {"MODEL_ID": "b", "N": "1", "EXTRA": "c"}


def test_null_env_needs_override() -> None:
    text = variant(envs={"HF_TOKEN": None, "MODEL": "m"})
    with pytest.raises(SpecValidationError) as info:
        load_spec(text)
    assert [i.path for i in info.value.issues] == ["envs.HF_TOKEN"]
    assert "--env HF_TOKEN=" in str(info.value)
    assert load_spec(text, env_overrides={"HF_TOKEN": "hf_x"}).envs == {"HF_TOKEN": "hf_x", "MODEL": "m"}


def test_override_of_a_secret_stays_secret() -> None:
    text = variant(secrets={"API_KEY": None}, envs={"MODEL": "m"})
    spec = load_spec(text, env_overrides={"API_KEY": "k"})
    assert spec.secrets == {"API_KEY": "k"}
    assert "API_KEY" not in spec.envs
    assert "'k'" not in repr(spec)


def test_override_names_are_checked_when_given_as_a_dict() -> None:
    with pytest.raises(SpecValidationError) as info:
        load_spec(variant(), env_overrides={"BAD NAME": "x"})
    assert info.value.issues[0].path == "--env"


def test_envs_fill_service_file_mounts_and_workdir_as_skypilot_does() -> None:
    text = """
envs: {MODEL_NAME: llama, SIZE: "8"}
secrets: {API_KEY: s3cret}
service:
  readiness_probe:
    path: /v1/models/${MODEL_NAME}
    post_data: {model: $MODEL_NAME, other: $UNKNOWN}
    headers: {Authorization: Bearer $API_KEY}
resources: {ports: 8080}
workdir: ./models/$SIZE
file_mounts:
  /weights/llama-${SIZE}b: ./llama-${SIZE}b
run: serve
"""
    spec = load_spec(text, env_overrides={"SIZE": "70"})
    assert spec.service.readiness_path == "/v1/models/llama"
    assert spec.service.post_data == {"model": "llama", "other": "$UNKNOWN"}
    assert spec.service.headers == {"Authorization": "Bearer s3cret"}
    assert spec.workdir == "./models/70" and spec.file_mounts == {"/weights/llama-70b": "./llama-70b"}


def test_a_secret_outside_probe_headers_is_refused() -> None:
    text = """
secrets: {API_KEY: s3cret}
service:
  readiness_probe: {path: /, post_data: {key: $API_KEY}}
resources: {ports: 8080}
run: serve
"""
    with pytest.raises(SpecValidationError) as info:
        load_spec(text)
    assert [i.path for i in info.value.issues] == ["service"]
    assert "API_KEY" in str(info.value) and "s3cret" not in str(info.value)
