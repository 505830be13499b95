"""The JetStream side of the log: stream setup, subjects, and events as NATS messages.

One stream (default ``STRATUS``) holds every event under ``<prefix>.ev.>``; an event's subject is
``<prefix>.ev.<service>.<EventType>`` so a consumer can filter by service, by type, or both.
The payload is the stored JSON, untouched (the relay never re-encodes, so a payload this code
cannot read still travels and is dead-lettered by the consumer, not by the relay). The envelope
travels in headers; ``Nats-Msg-Id`` is the event id so JetStream drops a re-published event
inside its duplicate window.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig, StreamInfo

from .codec import decode, encode
from .envelope import RecordedEvent
from .errors import BusUnavailable, EventDecodeError
from .lifecycle import Backoff, retry_connect

log = logging.getLogger(__name__)

# Header names. Nats-Msg-Id is JetStream's own de-duplication header.
H_MSG_ID = "Nats-Msg-Id"
# The event id again, under our name: the envelope must not depend on a transport header that a
# repair tool may set differently (to get past the duplicate window on purpose).
H_EVENT_ID = "Stratus-Event-Id"
H_POSITION = "Stratus-Position"
H_STREAM = "Stratus-Stream"
H_VERSION = "Stratus-Version"
H_TYPE = "Stratus-Type"
H_SCHEMA = "Stratus-Schema"
H_OCCURRED_AT = "Stratus-Occurred-At"
H_CAUSATION = "Stratus-Causation-Id"
H_CORRELATION = "Stratus-Correlation-Id"
# W3C trace context travels under its own names so any tracer picks it up; other trace keys
# get a prefix so they can never collide with NATS headers.
_W3C_TRACE_KEYS = ("traceparent", "tracestate", "baggage")
_TRACE_PREFIX = "Stratus-Trace-"

_UNSAFE_TOKEN = re.compile(r"[^A-Za-z0-9_\-]")


@dataclass(frozen=True, slots=True)
class BusConfig:
    """Where events live on JetStream. Tests use a unique stream and prefix each."""

    stream: str = "STRATUS"
    prefix: str = "stratus"
    duplicate_window: float = 120.0  # seconds JetStream remembers a Nats-Msg-Id
    # Retention: Postgres keeps every event; the stream only needs what consumers have not read
    # yet (the relay republishes from Postgres on demand). 0 = unlimited. The defaults are
    # Settings' STRATUS_BUS_MAX_AGE / STRATUS_BUS_MAX_BYTES, so every process agrees on them.
    max_age: float = 604800.0
    max_bytes: int = 1_073_741_824

    @property
    def subjects(self) -> list[str]:
        return [f"{self.prefix}.ev.>"]

    def subject(self, service: str, event_type: str) -> str:
        return f"{self.prefix}.ev.{subject_token(service)}.{subject_token(event_type)}"

    def filter_for(self, *, service: str | None = None, event_type: str | None = None) -> str:
        """A filter subject: one service, one type, both, or (neither) everything."""
        svc = subject_token(service) if service is not None else "*"
        typ = subject_token(event_type) if event_type is not None else "*"
        return f"{self.prefix}.ev.{svc}.{typ}"

    def filters_for_types(self, event_types: Iterable[str]) -> list[str]:
        return [self.filter_for(event_type=t) for t in event_types]


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` is one or more tokens."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def subject_token(value: str) -> str:
    """A single subject token: dots and wildcards would change the subject's meaning."""
    return _UNSAFE_TOKEN.sub("_", value) or "_"


async def ensure_stream(js: JetStreamContext, config: BusConfig) -> StreamInfo:
    """Create the stream, or bring an existing one's subjects and windows to ``config``."""
    wanted = StreamConfig(
        name=config.stream,
        subjects=config.subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=config.duplicate_window,
        max_age=config.max_age,
        max_bytes=config.max_bytes if config.max_bytes > 0 else -1,
    )
    try:
        try:
            info = await js.stream_info(config.stream)
        except nats.js.errors.NotFoundError:
            return await js.add_stream(wanted)
        have = info.config
        if (
            have.subjects != wanted.subjects
            or have.duplicate_window != wanted.duplicate_window
            or (have.max_age or 0.0) != wanted.max_age
            or (have.max_bytes or -1) != wanted.max_bytes
        ):
            return await js.update_stream(wanted)
        return info
    except (nats.errors.Error, OSError) as exc:
        raise BusUnavailable(f"cannot set up JetStream stream {config.stream}: {exc}") from exc


# --------------------------------------------------------------------------- outgoing


class OutboxMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A stored event as the relay publishes it: the raw payload plus the envelope."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    version: int
    event_type: str
    schema_version: int
    payload: bytes
    occurred_at: datetime
    service: str
    causation_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    trace: dict[str, str] = {}

    @classmethod
    def from_recorded(cls, rec: RecordedEvent) -> OutboxMessage:
        """Re-encode a decoded event (tests, tools); the relay uses stored rows instead."""
        tag, schema, payload = encode(rec.event)
        return cls(
            position=rec.position, event_id=rec.event_id, stream_id=rec.stream_id,
            version=rec.version, event_type=tag, schema_version=schema, payload=payload,
            occurred_at=rec.occurred_at, service=rec.event.service, causation_id=rec.causation_id,
            correlation_id=rec.correlation_id, trace=dict(rec.trace),
        )  # fmt: skip

    def subject(self, config: BusConfig) -> str:
        return config.subject(self.service, self.event_type)

    def headers(self) -> dict[str, str]:
        h = {
            H_MSG_ID: str(self.event_id),
            H_EVENT_ID: str(self.event_id),
            H_POSITION: str(self.position),
            H_STREAM: self.stream_id,
            H_VERSION: str(self.version),
            H_TYPE: self.event_type,
            H_SCHEMA: str(self.schema_version),
            H_OCCURRED_AT: self.occurred_at.isoformat(),
        }
        if self.causation_id is not None:
            h[H_CAUSATION] = str(self.causation_id)
        if self.correlation_id is not None:
            h[H_CORRELATION] = str(self.correlation_id)
        for key, value in self.trace.items():
            h[key if key in _W3C_TRACE_KEYS else _TRACE_PREFIX + key] = value
        return h


# --------------------------------------------------------------------------- incoming


def decode_message(msg: Msg) -> RecordedEvent:
    """A received message back to a RecordedEvent.

    Raises ``EventDecodeError`` (missing or malformed envelope, unreadable payload) or
    ``UnknownEventType``: both are ``PermanentError``, i.e. poison.
    """
    return decode_parts(msg.headers or {}, msg.data)


def decode_parts(headers: Mapping[str, str], data: bytes) -> RecordedEvent:
    tag = headers.get(H_TYPE, "")
    if not tag:
        raise EventDecodeError("?", f"message has no {H_TYPE} header")
    try:
        envelope = _Envelope(
            event_id=uuid.UUID(headers.get(H_EVENT_ID) or headers[H_MSG_ID]),
            stream_id=headers[H_STREAM],
            version=int(headers[H_VERSION]),
            position=int(headers[H_POSITION]),
            schema_version=int(headers.get(H_SCHEMA, "1")),
            occurred_at=datetime.fromisoformat(headers[H_OCCURRED_AT]),
            causation_id=_opt_uuid(headers.get(H_CAUSATION)),
            correlation_id=_opt_uuid(headers.get(H_CORRELATION)),
        )
    except (KeyError, ValueError) as exc:
        raise EventDecodeError(tag, f"bad envelope header: {exc!r}") from exc
    trace = {k: v for k, v in headers.items() if k in _W3C_TRACE_KEYS}
    trace.update({k[len(_TRACE_PREFIX) :]: v for k, v in headers.items() if k.startswith(_TRACE_PREFIX)})
    return RecordedEvent(
        event_id=envelope.event_id, stream_id=envelope.stream_id, version=envelope.version,
        position=envelope.position, event_type=tag,
        event=decode(tag, envelope.schema_version, data), occurred_at=envelope.occurred_at,
        causation_id=envelope.causation_id, correlation_id=envelope.correlation_id, trace=trace,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Envelope:
    event_id: uuid.UUID
    stream_id: str
    version: int
    position: int
    schema_version: int
    occurred_at: datetime
    causation_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None


def _opt_uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


# --------------------------------------------------------------------------- connecting


async def connect(url: str, *, name: str, wait: float | None = 10.0) -> NATS:
    """A NATS connection that reconnects forever once up (an outage is waited out, not fatal).

    The first connection is retried for ``wait`` seconds (None: until it succeeds).
    """
    nc = NATS()
    try:
        await asyncio.wait_for(
            nc.connect(
                servers=[url], name=name, connect_timeout=2,
                # Annotated int, used as a float sleep: a quick retry after a server restart.
                allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.25,  # type: ignore[arg-type]
                error_cb=_logged_error(name, url),
                disconnected_cb=_logged(nc, name, url, "disconnected from"),
                reconnected_cb=_logged(nc, name, url, "reconnected to"),
            ),
            wait,
        )  # fmt: skip
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        await nc.close()
        raise BusUnavailable(f"cannot connect to NATS at {url}: {exc!r}") from exc
    return nc


async def connect_until_stopped(url: str, name: str, stop: asyncio.Event) -> NATS | None:
    """Connect, retrying until NATS is up or ``stop`` is set (then None): for service start-up."""
    # No delay between tries: connect() itself spends 5 s retrying.
    return await retry_connect(
        lambda: connect(url, name=name, wait=5.0), what=name, stop=stop, backoff=Backoff(0.0, 0.0)
    )


def _logged_error(name: str, url: str) -> Callable[[Exception], Awaitable[None]]:
    """nats-py reports every failed reconnect attempt here: log the first of a run of the same
    error as a warning, the repeats at debug (an outage is expected, and survived)."""
    last: list[str] = [""]

    async def on_error(exc: Exception) -> None:
        text = repr(exc)
        level = logging.DEBUG if text == last[0] else logging.WARNING
        last[0] = text
        log.log(level, "NATS %s (%s): %s", name, url, text)

    return on_error


def _logged(nc: NATS, name: str, url: str, what: str) -> Callable[[], Awaitable[None]]:
    async def on_event() -> None:
        # A disconnect while closing on purpose is no news.
        level = logging.DEBUG if nc.is_closed or nc.is_draining else logging.WARNING
        log.log(level, "NATS %s: %s %s", name, what, url)

    return on_event
