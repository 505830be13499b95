"""The autoscaler's projection table: one ``AutoscalerState`` per service, in Postgres.

It is written in the same transaction as the consumer's tracking row and any ScaleDecided it
appends, so the hysteresis survives a restart exactly (SkyServe keeps it in memory and flaps
after a controller restart: its issue #8562).
"""

from __future__ import annotations

import asyncpg
import msgspec

from libs.events.schema import AUTOSCALER_DDL, apply_ddl

from .decide import AutoscalerState

_SCHEMA = AUTOSCALER_DDL  # the one text, in libs.events.schema's migration list

_decoder = msgspec.json.Decoder(AutoscalerState)


async def ensure_schema(pool: asyncpg.Pool) -> None:
    await apply_ddl(pool, 0x5354_0020, _SCHEMA)


async def load_state(conn: asyncpg.Connection, service: str, *, for_update: bool = False) -> AutoscalerState:
    lock = " FOR UPDATE" if for_update else ""
    raw = await conn.fetchval(
        f"SELECT state::text FROM stratus_autoscaler_state WHERE service = $1{lock}", service
    )
    return _decoder.decode(raw) if raw else AutoscalerState(service=service)


async def save_state(conn: asyncpg.Connection, state: AutoscalerState) -> None:
    await conn.execute(
        "INSERT INTO stratus_autoscaler_state (service, state) VALUES ($1, $2::jsonb)"
        " ON CONFLICT (service) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
        state.service,
        msgspec.json.encode(state).decode(),
    )


async def delete_state(conn: asyncpg.Connection, service: str) -> None:
    await conn.execute("DELETE FROM stratus_autoscaler_state WHERE service = $1", service)
