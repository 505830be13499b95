"""libs.bootstrap against a real Postgres: a token works exactly once, before its expiry, and only
its hash is stored; the log token reads back for the control plane."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from libs.bootstrap import (
    TokenExpired,
    TokenUnknown,
    TokenUsed,
    issue,
    log_token_for,
    redeem,
    refusal,
)


@pytest.fixture
async def pool(fresh_db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(fresh_db_url, min_size=1, max_size=4)
    try:
        yield p
    finally:
        await p.close()


@pytest.mark.parametrize(
    ("used_at", "expires_at", "now", "expected"),
    [
        (None, 100.0, 99.9, None),
        (None, 100.0, 100.0, TokenExpired),
        (50.0, 100.0, 60.0, TokenUsed),
        (50.0, 100.0, 200.0, TokenUsed),
    ],
)
def test_refusal(used_at: float | None, expires_at: float, now: float, expected: type | None) -> None:
    assert refusal(used_at, expires_at, now) is expected


async def test_a_token_redeems_once(pool: asyncpg.Pool, tmp_path: Path) -> None:
    issued = await issue(pool, "svc", 4, 2, tmp_path, ttl=60)
    got = await redeem(pool, issued.token, tmp_path)
    assert (got.service, got.replica_id, got.version, got.log_token) == ("svc", 4, 2, issued.log_token)
    with pytest.raises(TokenUsed):
        await redeem(pool, issued.token, tmp_path)
    assert await log_token_for(pool, "svc", 4, tmp_path) == issued.log_token
    rows = await pool.fetch("SELECT * FROM stratus_bootstrap_tokens")
    stored = " ".join(str(v) for row in rows for v in row.values())
    assert issued.token not in stored and issued.log_token not in stored


async def test_concurrent_redeems_let_exactly_one_through(pool: asyncpg.Pool, tmp_path: Path) -> None:
    issued = await issue(pool, "svc", 1, 1, tmp_path)
    results = await asyncio.gather(
        *(redeem(pool, issued.token, tmp_path) for _ in range(4)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, TokenUsed) for r in results if isinstance(r, BaseException))


async def test_expired_and_unknown_tokens_are_refused(pool: asyncpg.Pool, tmp_path: Path) -> None:
    issued = await issue(pool, "svc", 1, 1, tmp_path, ttl=10, now=1000.0)
    with pytest.raises(TokenExpired):
        await redeem(pool, issued.token, tmp_path, now=1010.0)
    assert (await redeem(pool, issued.token, tmp_path, now=1009.0)).replica_id == 1
    with pytest.raises(TokenUnknown):
        await redeem(pool, "never-issued", tmp_path)


async def test_the_latest_launch_owns_the_log_token(pool: asyncpg.Pool, tmp_path: Path) -> None:
    assert await log_token_for(pool, "svc", 1, tmp_path) is None
    await issue(pool, "svc", 1, 1, tmp_path, now=1.0)
    second = await issue(pool, "svc", 1, 1, tmp_path, now=2.0)
    assert await log_token_for(pool, "svc", 1, tmp_path) == second.log_token
    with pytest.raises(ValueError, match="ttl must be > 0"):
        await issue(pool, "svc", 1, 1, tmp_path, ttl=0)
