"""The API's side: ask for a chunk, list logged replicas, follow a log chunk by chunk."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import nats.errors
from nats.aio.client import Client as NATS

from .errors import LogsUnavailable
from .protocol import LogReply, LogRequest, ReplicaList, decode, encode, logs_subject


class ReplicaLogClient:
    def __init__(self, nc: NATS, prefix: str, *, timeout: float = 5.0) -> None:
        self._nc = nc
        self._subject = logs_subject(prefix)
        self._timeout = timeout

    async def _ask(self, req: LogRequest) -> bytes:
        try:
            msg = await self._nc.request(self._subject, encode(req), timeout=self._timeout)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise LogsUnavailable(
                "no provisioner answered for replica logs (it owns them): is it running? "
                "(`stratus local status`)"
            ) from exc
        except nats.errors.Error as exc:
            raise LogsUnavailable(f"cannot ask for replica logs over NATS: {exc!r}") from exc
        return msg.data

    async def read(
        self, service: str, replica_id: int, *, offset: int | None = None, tail: int | None = None
    ) -> LogReply:
        req = LogRequest(service=service, replica_id=replica_id, offset=offset, tail=tail)
        return decode(await self._ask(req), LogReply)

    async def replica_ids(self, service: str) -> list[int]:
        return decode(await self._ask(LogRequest(service=service, op="list")), ReplicaList).replica_ids


async def stream_log(
    client: ReplicaLogClient,
    service: str,
    replica_id: int,
    *,
    first: LogReply,
    follow: bool,
    stopping: asyncio.Event,
    done: Callable[[], bool] = lambda: False,
    poll_interval: float = 0.25,
) -> AsyncIterator[bytes]:
    """The log from ``first`` (the caller's first read) on; with ``follow``, what is appended.

    A follow waits for a log that does not exist yet, starts over when the file is truncated or
    replaced, and ends when ``done()`` says the writer finished (after one last read) or when
    ``stopping`` is set.
    """
    reply = first
    file_id: int | None = None
    while True:
        if reply.found:
            if file_id is None:
                file_id = reply.file_id
            elif reply.file_id != file_id or reply.size < reply.offset:  # rotated or truncated
                file_id = reply.file_id
                reply = await client.read(service, replica_id, offset=0)
                continue
            if reply.data:
                yield reply.data
                reply = await client.read(service, replica_id, offset=reply.next_offset)
                continue
        if not follow or stopping.is_set():
            return
        if done():
            if reply.found:  # one last read: the writer may have flushed after ours
                last = await client.read(service, replica_id, offset=reply.next_offset)
                while last.found and last.data:
                    yield last.data
                    last = await client.read(service, replica_id, offset=last.next_offset)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), poll_interval)
        reply = await client.read(service, replica_id, offset=reply.next_offset if reply.found else 0)
