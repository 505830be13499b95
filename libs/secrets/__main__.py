"""``python -m libs.secrets rotate``: re-encrypt every service's data key under a new master key.

Run it where the key file lives (``$STRATUS_HOME/secrets.key``), with ``DATABASE_URL`` set;
``stratus secrets rotate-key`` calls it for a local stack.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from libs.runtime.settings import Settings

from .errors import SecretsError, SecretsStoreError
from .keys import key_path
from .rotate import Rotation, rotate_master_key


async def rotate(database_url: str, home: Path) -> Rotation:
    try:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SecretsStoreError(f"cannot connect to Postgres at {database_url}: {exc}") from exc
    try:
        return await rotate_master_key(pool, home)
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    p = argparse.ArgumentParser(prog="python -m libs.secrets", description="Secrets administration.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("rotate", help="re-encrypt every data key under a new master key")
    r.add_argument("--database-url", default=settings.database_url)
    r.add_argument("--home", type=Path, default=settings.home, help="STRATUS_HOME holding secrets.key")
    args = p.parse_args(argv)
    try:
        done = asyncio.run(rotate(args.database_url, args.home))
    except SecretsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"rotated the master key in {key_path(args.home)}: {done.data_keys} data key(s) re-encrypted, "
        f"{done.migrated_values} older value(s) moved under their data key, "
        f"{done.dropped_keys} old key(s) removed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
