"""The secrets tables on a real Postgres: data keys per service, purge, master key rotation."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from libs.events.store import EventStore
from libs.secrets import (
    KeyFileError,
    SecretUnreadable,
    ensure_schema,
    key_path,
    load_or_create_key,
    load_or_create_keys,
    load_probe_headers,
    load_secrets,
    purge_service,
    rotate_master_key,
    store_secrets,
)
from libs.secrets.__main__ import main as secrets_main

VALUES = {"HF_TOKEN": "hf_value_0001", "DB_PASSWORD": "pg-pass-0002"}
HEADERS = {"Authorization": "Bearer probe-0003"}


async def _put(store: EventStore, home: Path, service: str, version: int = 1) -> None:
    async with store.transaction() as tx:
        await store_secrets(tx.conn, service, version, VALUES, home, probe_headers=HEADERS)


async def _ciphertexts(store: EventStore, service: str) -> list[bytes]:
    rows = await store.pool.fetch("SELECT value_encrypted FROM stratus_secrets WHERE service = $1", service)
    return [bytes(r[0]) for r in rows]


def _every_key_at_hand(home: Path, data_key_tokens: list[bytes]) -> MultiFernet:
    master = [Fernet(k) for k in load_or_create_keys(home)]
    data = [Fernet(MultiFernet(master).decrypt(t)) for t in data_key_tokens]
    return MultiFernet([*data, *master])


@pytest.fixture
async def home(store: EventStore, tmp_path: Path) -> Path:
    await ensure_schema(store.pool)
    return tmp_path / "home"


async def test_values_are_encrypted_by_a_data_key_per_service(store: EventStore, home: Path) -> None:
    await _put(store, home, "a")
    await _put(store, home, "b")
    await _put(store, home, "a", version=2)
    assert await load_secrets(store.pool, "a", 1, home) == VALUES
    assert await load_probe_headers(store.pool, "a", 2, home) == HEADERS
    assert await load_secrets(store.pool, "a", 3, home) == {}
    keys = {
        r["service"]: bytes(r["key_encrypted"])
        for r in await store.pool.fetch("SELECT * FROM stratus_secret_keys")
    }
    assert sorted(keys) == ["a", "b"]
    # The master key alone decrypts no value: each needs its service's data key.
    master = Fernet(load_or_create_key(home))
    data_a = Fernet(master.decrypt(keys["a"]))
    for token in await _ciphertexts(store, "a"):
        with pytest.raises(InvalidToken):
            master.decrypt(token)
        assert data_a.decrypt(token).decode() in {*VALUES.values(), *HEADERS.values()}
    for token in await _ciphertexts(store, "b"):
        with pytest.raises(InvalidToken):
            data_a.decrypt(token)
    assert stat.S_IMODE(key_path(home).stat().st_mode) == 0o600


async def test_purge_makes_the_values_unreadable_and_leaves_other_services(
    store: EventStore, home: Path
) -> None:
    await _put(store, home, "gone")
    await _put(store, home, "kept")
    before = await _ciphertexts(store, "gone")
    tokens = [bytes(r[0]) for r in await store.pool.fetch("SELECT key_encrypted FROM stratus_secret_keys")]
    assert _every_key_at_hand(home, tokens).decrypt(before[0])  # readable while the data key exists

    async with store.transaction() as tx:
        assert await purge_service(tx.conn, "gone") == 3

    assert await load_secrets(store.pool, "gone", 1, home) == {}
    assert await load_secrets(store.pool, "kept", 1, home) == VALUES
    left = [bytes(r[0]) for r in await store.pool.fetch("SELECT key_encrypted FROM stratus_secret_keys")]
    assert len(left) == 1
    everything = _every_key_at_hand(home, left)  # every key still in Postgres or the key file
    for token in before:
        with pytest.raises(InvalidToken):
            everything.decrypt(token)
    # Created again under the name, the service gets a new data key.
    await _put(store, home, "gone")
    assert await load_secrets(store.pool, "gone", 1, home) == VALUES


async def test_rotation_reencrypts_the_data_keys_and_drops_the_old_master_key(
    store: EventStore, home: Path
) -> None:
    await _put(store, home, "a")
    await _put(store, home, "b", version=4)
    old_key = load_or_create_key(home)
    old_master = Fernet(old_key)
    done = await rotate_master_key(store.pool, home)
    assert (done.data_keys, done.migrated_values, done.dropped_keys) == (2, 0, 1)
    keys = load_or_create_keys(home)
    assert len(keys) == 1 and keys[0] != old_key
    for row in await store.pool.fetch("SELECT key_encrypted FROM stratus_secret_keys"):
        with pytest.raises(InvalidToken):
            old_master.decrypt(bytes(row[0]))  # no data key is under the old master key any more
    assert await load_secrets(store.pool, "a", 1, home) == VALUES
    assert await load_probe_headers(store.pool, "b", 4, home) == HEADERS
    assert stat.S_IMODE(key_path(home).stat().st_mode) == 0o600


async def test_during_a_rotation_both_keys_read_and_writers_wait(store: EventStore, home: Path) -> None:
    """A writer holding the data-key lock delays the rotation; what it wrote gets rotated too."""
    await _put(store, home, "a")
    old = load_or_create_keys(home)
    async with store.pool.acquire() as conn, conn.transaction():
        await store_secrets(conn, "late", 1, VALUES, home)  # holds the rotation lock shared
        rotation = asyncio.create_task(rotate_master_key(store.pool, home))
        for _ in range(200):  # the rotation writes [new, old] before it waits for the lock
            if len(load_or_create_keys(home)) == 2:
                break
            await asyncio.sleep(0.01)
        ring = load_or_create_keys(home)
        assert len(ring) == 2 and ring[1] == old[0]
        assert await load_secrets(store.pool, "a", 1, home) == VALUES  # readable mid-rotation
        assert not rotation.done()
    done = await asyncio.wait_for(rotation, 10)
    assert done.data_keys == 2
    assert load_or_create_keys(home) == [ring[0]]
    assert await load_secrets(store.pool, "late", 1, home) == VALUES


async def test_values_from_before_data_keys_still_read_and_rotation_migrates_them(
    store: EventStore, home: Path
) -> None:
    master = Fernet(load_or_create_key(home))
    await store.pool.execute(
        "INSERT INTO stratus_secrets (service, version, name, value_encrypted)"
        " VALUES ('old', 1, 'HF_TOKEN', $1)",
        master.encrypt(b"legacy-0004"),
    )
    assert await load_secrets(store.pool, "old", 1, home) == {"HF_TOKEN": "legacy-0004"}
    done = await rotate_master_key(store.pool, home)
    assert done.migrated_values == 1 and done.data_keys == 0
    assert await load_secrets(store.pool, "old", 1, home) == {"HF_TOKEN": "legacy-0004"}
    (token,) = await _ciphertexts(store, "old")
    with pytest.raises(InvalidToken):
        Fernet(load_or_create_key(home)).decrypt(token)  # now under the service's data key


async def test_the_admin_command_rotates(
    store: EventStore, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _put(store, home, "a")
    before = load_or_create_keys(home)
    code = await asyncio.to_thread(secrets_main, ["rotate", "--database-url", store.dsn, "--home", str(home)])
    assert code == 0
    assert "1 data key(s) re-encrypted" in capsys.readouterr().out
    assert load_or_create_keys(home) != before
    assert await load_secrets(store.pool, "a", 1, home) == VALUES


async def test_a_wrong_key_file_says_so(store: EventStore, home: Path, tmp_path: Path) -> None:
    await _put(store, home, "a")
    other = tmp_path / "other"
    load_or_create_key(other)
    with pytest.raises(SecretUnreadable, match="another key file"):
        await load_secrets(store.pool, "a", 1, other)
    key_path(other).write_text("not a key\n")
    with pytest.raises(KeyFileError, match="line 1 is not a valid secrets key"):
        load_or_create_key(other)
    key_path(other).write_text("\n")
    with pytest.raises(KeyFileError, match="is empty"):
        load_or_create_key(other)
