"""The responder on the replica-logs subject: the log owner (the provisioner) registers it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .errors import BadLogMessage
from .files import read_chunk
from .protocol import LogReply, LogRequest, ReplicaList, decode, encode, logs_subject

log = logging.getLogger("stratus.replica_logs")

# Several servers (provisioner replicas) share the work; one answers each request.
QUEUE = "replica-logs"


class LogLocator(Protocol):
    """Where the owner keeps replica logs."""

    def path(self, service: str, replica_id: int) -> Path | str:
        """The log file of a replica, or why there is none (a str shown to the user)."""
        ...

    def replica_ids(self, service: str) -> list[int]:
        """The replicas of ``service`` that have a log, terminated ones included."""
        ...


def answer(locator: LogLocator, data: bytes) -> bytes:
    """The reply to one request (pure but for the file reads)."""
    try:
        req = decode(data, LogRequest)
    except BadLogMessage as exc:
        return encode(LogReply(found=False, error=str(exc)))
    if req.op == "list":
        return encode(ReplicaList(replica_ids=sorted(locator.replica_ids(req.service))))
    where = locator.path(req.service, req.replica_id)
    if isinstance(where, str):
        return encode(LogReply(found=False, reason=where))
    return encode(read_chunk(where, offset=req.offset, tail=req.tail, limit=req.limit))


async def serve_replica_logs(nc: NATS, prefix: str, locator: LogLocator) -> Subscription:
    """Answer replica-log requests until the subscription is drained or the connection closed."""

    async def handle(msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            reply = await asyncio.to_thread(answer, locator, msg.data)
        except OSError as exc:  # unreadable file: say so rather than leave the caller waiting
            log.warning("reading a replica log failed: %s", exc)
            reply = encode(LogReply(found=False, reason=f"the log cannot be read: {exc}"))
        await msg.respond(reply)

    return await nc.subscribe(logs_subject(prefix), queue=QUEUE, cb=handle)
