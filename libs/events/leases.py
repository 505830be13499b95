"""Leases: one leader per name, in a Postgres row that expires unless renewed.

A session advisory lock is held as long as its TCP connection looks alive, which with default
keepalive is hours after a partition. A lease is a row ``(name, holder, expires_at, term)``
renewed every ``renew`` seconds for ``ttl`` seconds, in the database's clock:

- a standby takes the row once ``expires_at`` has passed (``term`` goes up by one);
- the holder counts itself leader only until (the start of its last successful renewal + ttl),
  in its own monotonic clock. That instant is before the database's ``expires_at`` (the
  renewal started before the database stamped it), so a holder that is partitioned, paused
  (SIGSTOP) or slow stops acting before anyone else may start.

``Lease.run(stop)`` keeps trying to acquire and renew; ``leading`` says whether to act now;
``wait_leading`` waits for it; ``lost`` is set when a held lease goes (and cleared on gain).
Gains and losses are logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

import asyncpg

from .errors import StoreUnavailable
from .lifecycle import sleep_or_stop

log = logging.getLogger(__name__)

_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)

_ACQUIRE = """
INSERT INTO stratus_leases AS l (name, holder, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at,
    term = CASE WHEN l.holder = EXCLUDED.holder THEN l.term ELSE l.term + 1 END,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.acquired_at ELSE now() END
WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING term
"""


def instance_id(kind: str) -> str:
    """A name for this process, unique across hosts and restarts."""
    return f"{kind}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def live_holder(pool: asyncpg.Pool, name: str) -> str | None:
    """Who holds lease ``name`` now (not expired), or None."""
    try:
        return await pool.fetchval(  # type: ignore[no-any-return]
            "SELECT holder FROM stratus_leases WHERE name = $1 AND expires_at > now()", name
        )
    except _DB_ERRORS as exc:
        raise StoreUnavailable(f"cannot read lease {name!r}: {exc!r}") from exc


class Lease:
    def __init__(
        self, pool: asyncpg.Pool, name: str, holder: str, *, ttl: float = 5.0, renew: float = 1.0
    ) -> None:
        if not 0 < renew < ttl:
            raise ValueError(f"lease {name!r}: renew every {renew}s must be shorter than the ttl {ttl}s")
        self.pool = pool
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.renew = renew
        self.term = 0
        self.lost = asyncio.Event()
        self._gained = asyncio.Event()
        self._valid_until = 0.0  # monotonic

    @property
    def leading(self) -> bool:
        return asyncio.get_running_loop().time() < self._valid_until

    async def wait_leading(self, stop: asyncio.Event) -> bool:
        """Until this holds the lease (True) or ``stop`` is set (False)."""
        while not self.leading:
            if stop.is_set():
                return False
            gained = asyncio.ensure_future(self._gained.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait([gained, stopped], timeout=self.renew, return_when=asyncio.FIRST_COMPLETED)
            for f in (gained, stopped):
                f.cancel()
        return True

    async def try_acquire(self) -> bool:
        """One acquire-or-renew round; True if this holds the lease afterwards."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            term = await asyncio.wait_for(
                self.pool.fetchval(_ACQUIRE, self.name, self.holder, self.ttl), timeout=self.ttl / 2
            )
        except (*_DB_ERRORS, TimeoutError) as exc:
            self._expire_if_due(f"renewal failed: {exc!r}")
            return self.leading
        if term is None:
            self._set_lost("held by another")
            return False
        was = self.leading
        self._valid_until = started + self.ttl
        if not was:
            self.term = int(term)
            self.lost.clear()
            self._gained.set()
            self._gained = asyncio.Event()
            log.info("lease %s: %s leads (term %d)", self.name, self.holder, self.term)
        return True

    def _expire_if_due(self, why: str) -> None:
        if self._valid_until and not self.leading:
            self._set_lost(why)

    def _set_lost(self, why: str) -> None:
        if self._valid_until:
            log.warning("lease %s: %s no longer leads (%s)", self.name, self.holder, why)
        self._valid_until = 0.0
        self.lost.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Acquire and renew until ``stop``; then release (a successor need not wait the ttl)."""
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                await self.try_acquire()
                # Wake early enough to notice an expiry that renewals could not prevent.
                wait = self.renew if not self.leading else min(self.renew, self._valid_until - loop.time())
                if await sleep_or_stop(stop, max(wait, 0.01)):
                    break
                self._expire_if_due("not renewed in time")
        finally:
            await self.release()

    async def release(self) -> None:
        was = self._valid_until > 0
        self._valid_until = 0.0
        self.lost.set()
        if not was:
            return
        try:
            await asyncio.wait_for(
                self.pool.execute(
                    "UPDATE stratus_leases SET expires_at = now() WHERE name = $1 AND holder = $2",
                    self.name,
                    self.holder,
                ),
                timeout=2.0,
            )
        except (*_DB_ERRORS, TimeoutError) as exc:
            log.warning("lease %s: release failed (%r); it expires in %.0fs", self.name, exc, self.ttl)
