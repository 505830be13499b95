"""The rule for what counts as a secret: a table of env names and values."""

from __future__ import annotations

import pytest

from libs.secrets import looks_secret, looks_secret_value, redact_spec_dict, split_envs
from libs.secrets.rules import name_parts

SECRET_NAMES = [
    "HF_TOKEN", "OPENAI_API_KEY", "GITHUB_PAT", "DB_PWD", "DB_PASS", "AUTHORIZATION", "AUTH_TOKEN",
    "db_password", "MY_SECRET", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_CREDENTIALS",
    "GOOGLE_APPLICATION_CREDENTIALS", "PGPASSWORD", "PGPASSWD", "GHTOKEN", "hfToken", "openaiApiKey",
    "PRIVATE_KEY", "SSH_PASSPHRASE", "APIKEY", "X_APIKEY", "TOKEN", "KEY", "SECRETS", "CLIENT_CREDS",
]  # fmt: skip
PLAIN_NAMES = [
    "TOKEN_DELAY", "MAX_TOKENS", "MAX_TOKEN", "NUM_TOKENS", "KEY_PREFIX", "TOKEN_LIMIT", "AUTH_ENABLED",
    "AUTH_MODE", "SSH_KEY_PATH", "HF_TOKEN_FILE", "AUTH_URL", "API_KEY_HEADER", "TOKENIZER", "KEYBOARD",
    "MONKEY", "PATH", "PWD", "OLDPWD", "PASSAGE", "PATTERN", "MODEL_SIZE", "PORT", "HF_HOME", "COMPASS",
    "SESSION_TTL", "DATABASE_URL",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_names_that_are_secrets(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_names_that_are_not_secrets(name: str) -> None:
    assert not looks_secret(name)


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("OPENAI_API_KEY", ["OPENAI", "API", "KEY"]),
        ("hfToken", ["HF", "TOKEN"]),
        ("my-secret.v2", ["MY", "SECRET", "V2"]),
        ("__X__", ["X"]),
    ],
)
def test_names_split_into_parts(name: str, parts: list[str]) -> None:
    assert name_parts(name) == parts


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        ("postgresql://app:s3cret@db.internal:5432/app", True),
        ("redis://:hunter2@cache:6379/0", True),
        ("mongodb+srv://u:p%40ss@cluster0/x", True),
        ("primary=amqp://guest:guest@mq,secondary=none", True),
        ("https://sentry.io/1", False),
        ("https://user@host/repo.git", False),  # a user name without password
        ("http://localhost:8080/v1", False),
        ("user:pass", False),  # not a URL
        ("mailto:someone@example.com", False),
        ("", False),
    ],
)
def test_values_that_are_urls_with_a_password(value: str, secret: bool) -> None:
    assert looks_secret_value(value) is secret


def test_split_and_redact_keep_names_only() -> None:
    split = split_envs(
        {"MODEL_SIZE": "7", "HF_TOKEN": "t", "DATABASE_URL": "postgres://u:pw@h/db", "TOKEN_DELAY": "0.1"},
        {"DB": "p"},
        probe_headers={"Authorization": "Bearer xyz"},
    )
    assert split.public == {"MODEL_SIZE": "7", "TOKEN_DELAY": "0.1"}
    assert split.secret_names == ["DATABASE_URL", "DB", "HF_TOKEN"]
    assert split.probe_headers == {"Authorization": "Bearer xyz"}
    spec = {"envs": {}, "service": {"readiness_path": "/", "headers": {"Authorization": "Bearer xyz"}}}
    out = redact_spec_dict(spec, split)
    assert out["envs"] == {"MODEL_SIZE": "7", "TOKEN_DELAY": "0.1"}
    assert out["secrets"] == {"DATABASE_URL": "<redacted>", "DB": "<redacted>", "HF_TOKEN": "<redacted>"}
    assert out["service"] == {"readiness_path": "/", "headers": {"Authorization": "<redacted>"}}
    assert spec["service"]["headers"] == {"Authorization": "Bearer xyz"}  # the input is left alone
