"""Secret env values never reach the event log; they are stored encrypted and load back."""

from __future__ import annotations

import stat

import pytest

from libs.events.types import ServiceRequested, ServiceUpdateRequested, service_stream
from libs.secrets import (
    REDACTED,
    SecretsError,
    key_path,
    load_or_create_key,
    load_secrets,
    looks_secret,
    split_envs,
)

from .conftest import SERVICE_YAML, Api

SECRET_VALUES = ("hf_supersecret_token_value", "pg-pass-0451", "sk-override-9931", "v2-token-777")

SECRET_YAML = (
    SERVICE_YAML
    + """\
envs:
  MODEL_SIZE: 7
  HF_TOKEN: hf_supersecret_token_value
secrets:
  DB_PASSWORD: pg-pass-0451
"""
)


def test_the_secret_name_rule() -> None:
    for name in ("HF_TOKEN", "OPENAI_API_KEY", "db_password", "MY_SECRET", "AWS_CREDENTIALS", "PGPASSWD"):
        assert looks_secret(name), name
    for name in ("MODEL_SIZE", "PORT", "HF_HOME"):
        assert not looks_secret(name), name
    split = split_envs({"MODEL_SIZE": "7", "HF_TOKEN": "t"}, {"DB": "p"})
    assert split.public == {"MODEL_SIZE": "7"} and split.secret_names == ["DB", "HF_TOKEN"]


async def test_secrets_never_appear_in_the_event_log(api: Api) -> None:
    r = await api.http.post(
        "/v1/services",
        json={"name": "sec", "yaml": SECRET_YAML, "env": {"API_KEY": "sk-override-9931", "MODEL_SIZE": "13"}},
    )
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["secret_envs"] == ["API_KEY", "DB_PASSWORD", "HF_TOKEN"]
    assert plan["spec"]["envs"] == {"MODEL_SIZE": "13"}
    r = await api.http.post(
        "/v1/services/sec/versions", json={"yaml": SECRET_YAML.replace("pg-pass-0451", "v2-token-777")}
    )
    assert r.status_code == 202, r.text

    # Grep every stored payload (and the API's answers) for the values.
    payloads = [row[0] for row in await api.store.pool.fetch("SELECT payload::text FROM stratus_events")]
    assert len(payloads) == 2
    for value in SECRET_VALUES:
        assert not any(value in p for p in payloads), value
        assert value not in r.text and value not in (await api.http.get("/v1/services/sec")).text
        assert value not in (await api.http.get("/v1/events")).text

    first, second = (rec.event for rec in await api.store.read_stream(service_stream("sec")))
    assert isinstance(first, ServiceRequested) and isinstance(second, ServiceUpdateRequested)
    assert first.secret_envs == ["API_KEY", "DB_PASSWORD", "HF_TOKEN"]
    assert first.spec["secrets"] == {"API_KEY": REDACTED, "DB_PASSWORD": REDACTED, "HF_TOKEN": REDACTED}
    assert second.secret_envs == ["DB_PASSWORD", "HF_TOKEN"]

    # Stored encrypted, one row per (service, version, name); the provisioner loads them back.
    rows = await api.store.pool.fetch("SELECT service, version, name, value_encrypted FROM stratus_secrets")
    assert {(r["service"], r["version"], r["name"]) for r in rows} == {
        ("sec", 1, "API_KEY"), ("sec", 1, "DB_PASSWORD"), ("sec", 1, "HF_TOKEN"),
        ("sec", 2, "DB_PASSWORD"), ("sec", 2, "HF_TOKEN"),
    }  # fmt: skip
    for row in rows:
        assert not any(v.encode() in bytes(row["value_encrypted"]) for v in SECRET_VALUES)
    home = api.settings.home
    assert await load_secrets(api.store.pool, "sec", 1, home) == {
        "API_KEY": "sk-override-9931", "DB_PASSWORD": "pg-pass-0451",
        "HF_TOKEN": "hf_supersecret_token_value",
    }  # fmt: skip
    assert (await load_secrets(api.store.pool, "sec", 2, home))["DB_PASSWORD"] == "v2-token-777"
    assert await load_secrets(api.store.pool, "other", 1, home) == {}
    assert stat.S_IMODE(key_path(home).stat().st_mode) == 0o600


async def test_a_dry_run_stores_no_secret(api: Api) -> None:
    r = await api.http.post("/v1/services", json={"name": "sec", "yaml": SECRET_YAML, "dry_run": True})
    assert r.status_code == 200
    assert await api.store.pool.fetchval("SELECT count(*) FROM stratus_secrets") == 0


async def test_a_wrong_key_file_says_so(api: Api, tmp_path_factory: pytest.TempPathFactory) -> None:
    r = await api.http.post("/v1/services", json={"name": "sec", "yaml": SECRET_YAML})
    assert r.status_code == 201
    other_home = tmp_path_factory.mktemp("other-home")
    load_or_create_key(other_home)
    with pytest.raises(SecretsError, match="encrypted with another key"):
        await load_secrets(api.store.pool, "sec", 1, other_home)
    key_path(other_home).write_text("not a key")
    with pytest.raises(SecretsError, match="not a valid secrets key"):
        load_or_create_key(other_home)
