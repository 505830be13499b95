"""Postgres and NATS for the benchmark: started here in a temp dir, or taken from DATABASE_URL /
NATS_URL (a fresh database per section)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from libs.servers.nats_server import NatsServer
from libs.servers.postgres_server import PostgresServer


class DurablePostgresServer(PostgresServer):
    """libs.servers' Postgres with its test-speed settings (fsync, synchronous_commit and
    full_page_writes off) left at Postgres's defaults (on): every commit waits for a WAL flush."""

    def _settings(self) -> list[str]:
        out = super()._settings()
        drop = {"fsync=off", "synchronous_commit=off", "full_page_writes=off"}
        keep: list[str] = []
        for arg in out:
            if arg in drop:
                keep.pop()  # its "-c"
            else:
                keep.append(arg)
        return keep


class Env:
    """Postgres and NATS: started here in a temp dir, or taken from DATABASE_URL / NATS_URL."""

    def __init__(self, keep: bool = False, durable: bool = False) -> None:
        self.durable = durable
        self.tmp: Path | None = None
        self.pg: PostgresServer | None = None
        self.nats: NatsServer | None = None
        self.admin_url = os.environ.get("DATABASE_URL", "")
        self.nats_url = os.environ.get("NATS_URL", "")
        self.created: list[str] = []
        self.keep = keep

    def start(self) -> None:
        if not self.admin_url or not self.nats_url:
            self.tmp = Path(tempfile.mkdtemp(prefix="stratus-bench-events-"))
        if not self.admin_url:
            assert self.tmp is not None
            self.pg = (DurablePostgresServer if self.durable else PostgresServer)(self.tmp / "pg")
            self.pg.start()
            self.admin_url = self.pg.url
        if not self.nats_url:
            assert self.tmp is not None
            self.nats = NatsServer(self.tmp / "nats")
            self.nats.start()
            self.nats_url = self.nats.url

    def stop(self) -> None:
        if self.nats is not None:
            self.nats.stop()
        if self.pg is not None:
            self.pg.stop()
        if self.tmp is not None and not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    async def fresh_db(self, tag: str) -> str:
        name = f"stratus_bench_{tag}_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        base, _, rest = self.admin_url.rpartition("/")
        query = "?" + rest.split("?", 1)[1] if "?" in rest else ""
        return f"{base}/{name}{query}"

    async def drop_dbs(self) -> None:
        if self.pg is not None:
            return  # the whole cluster goes away with the temp dir
        conn = await asyncpg.connect(self.admin_url)
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def server_info(self) -> dict[str, Any]:
        conn = await asyncpg.connect(self.admin_url)
        try:
            info = {"postgres": await conn.fetchval("SHOW server_version")}
            for setting in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers"):
                info[setting] = await conn.fetchval(f"SHOW {setting}")
        finally:
            await conn.close()
        return info
