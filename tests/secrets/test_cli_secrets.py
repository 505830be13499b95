"""``stratus secrets check`` and ``stratus secrets rotate-key`` through the real CLI."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

from typer.testing import CliRunner

from libs.events.store import EventStore
from libs.runtime.settings import Settings
from libs.secrets import ensure_schema, load_or_create_keys, load_secrets, store_secrets
from services.api.cli import app
from services.api.cli_secrets import local_database_url

runner = CliRunner()


def test_check_applies_the_rule() -> None:
    result = runner.invoke(
        app, ["secrets", "check", "HF_TOKEN", "TOKEN_DELAY", "DB=postgres://u:pw@h/db", "PORT=80"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "HF_TOKEN: secret",
        "TOKEN_DELAY: plain",
        "DB: secret",
        "PORT: plain",
    ]


async def test_rotate_key_rotates_and_values_still_read(store: EventStore, tmp_path: Path) -> None:
    home = tmp_path / "home"
    await ensure_schema(store.pool)
    async with store.transaction() as tx:
        await store_secrets(tx.conn, "svc", 1, {"HF_TOKEN": "cli-rot-0001"}, home)
    before = load_or_create_keys(home)
    invoke = functools.partial(
        runner.invoke,
        app,
        ["secrets", "rotate-key"],
        env={"STRATUS_HOME": str(home), "DATABASE_URL": store.dsn},
    )
    result = await asyncio.to_thread(invoke)
    assert result.exit_code == 0, result.output
    assert "1 data key(s) re-encrypted" in result.output
    after = load_or_create_keys(home)
    assert len(after) == 1 and after != before
    assert await load_secrets(store.pool, "svc", 1, home) == {"HF_TOKEN": "cli-rot-0001"}


def test_the_local_stacks_database_is_found_or_named_missing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    result = runner.invoke(
        app, ["secrets", "rotate-key"], env={"STRATUS_HOME": str(tmp_path), "DATABASE_URL": None}
    )
    assert result.exit_code != 0 and "stratus local up" in result.output
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "stack.json").write_text(json.dumps({"nats": 1, "postgres": 5599}))
    assert local_database_url(settings) == "postgresql://postgres@127.0.0.1:5599/postgres"
