"""The request and reply of the replica-logs subject (msgpack)."""

from __future__ import annotations

from typing import Literal, TypeVar

import msgspec

from .errors import BadLogMessage

# A reply stays well under NATS's default 1 MiB max payload.
MAX_CHUNK = 256 * 1024


def logs_subject(prefix: str) -> str:
    return f"{prefix}.rpc.replica-logs"


class LogRequest(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    replica_id: int = 0
    # "read": a chunk of one replica's log; "list": which replicas of ``service`` have a log.
    op: Literal["read", "list"] = "read"
    # Where to start: a byte offset, else ``tail`` lines before the end, else the beginning.
    offset: int | None = None
    tail: int | None = None
    limit: int = MAX_CHUNK


class LogReply(msgspec.Struct, frozen=True, kw_only=True):
    found: bool
    # When not found: why, for a person ("no log yet", "the gcp provider keeps no log here").
    reason: str = ""
    data: bytes = b""
    offset: int = 0  # where ``data`` starts
    next_offset: int = 0  # where to ask next
    size: int = 0  # the file's size when read (smaller than an offset: it was truncated)
    file_id: int = 0  # changes when the file is replaced (rotation)
    error: str = ""  # the request itself was bad


class ReplicaList(msgspec.Struct, frozen=True, kw_only=True):
    replica_ids: list[int] = []
    error: str = ""


_encoder = msgspec.msgpack.Encoder()


def encode(message: LogRequest | LogReply | ReplicaList) -> bytes:
    return _encoder.encode(message)


T = TypeVar("T")


def decode(data: bytes, kind: type[T]) -> T:
    try:
        return msgspec.msgpack.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadLogMessage(f"not a {kind.__name__}: {exc}") from exc
