"""Subjects, headers and stream setup on JetStream."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType

from libs.events.bus import (
    H_MSG_ID,
    H_POSITION,
    H_TYPE,
    BusConfig,
    OutboxMessage,
    decode_message,
    decode_parts,
    ensure_stream,
    subject_matches,
    subject_token,
)
from libs.events.envelope import RecordedEvent
from libs.events.errors import EventDecodeError, UnknownEventType
from libs.events.store import EventStore
from libs.events.types import ReplicaReady

from .helpers import requested


def recorded(**kw: object) -> RecordedEvent:
    base: dict[str, object] = dict(
        event_id=uuid.uuid4(), stream_id="replica-web-3", version=4, position=42, event_type="ReplicaReady",
        event=ReplicaReady(service="web", replica_id=3, url="http://10.0.0.3:8080"),
        occurred_at=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        causation_id=uuid.uuid4(), correlation_id=uuid.uuid4(),
        trace={"traceparent": "00-abc-def-01", "tracestate": "k=v", "span_kind": "consumer"},
    )  # fmt: skip
    base.update(kw)
    return RecordedEvent(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("service", "event_type", "subject"),
    [
        ("web", "ReplicaReady", "stratus.ev.web.ReplicaReady"),
        ("my-svc_2", "QpsSampled", "stratus.ev.my-svc_2.QpsSampled"),
        ("a.b", "X", "stratus.ev.a_b.X"),  # a dot would split the token
        ("*", ">", "stratus.ev._._"),  # wildcards would widen filters
        ("", "X", "stratus.ev._.X"),
    ],
)
def test_subject_per_event(service: str, event_type: str, subject: str) -> None:
    assert BusConfig().subject(service, event_type) == subject


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("p.ev.*.A", "p.ev.web.A", True),
        ("p.ev.*.A", "p.ev.web.B", False),
        ("p.ev.web.*", "p.ev.web.A", True),
        ("p.ev.>", "p.ev.web.A", True),
        ("p.ev.>", "p.ev", False),  # '>' needs at least one token
        ("p.ev.web", "p.ev.web.A", False),
        ("p.ev.web.A.x", "p.ev.web.A", False),
    ],
)
def test_subject_matching(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


def test_filters_and_prefix() -> None:
    bus = BusConfig(stream="S", prefix="p")
    assert bus.subjects == ["p.ev.>"]
    assert bus.filter_for(service="web") == "p.ev.web.*"
    assert bus.filter_for(event_type="ReplicaReady") == "p.ev.*.ReplicaReady"
    assert bus.filters_for_types(["A", "B"]) == ["p.ev.*.A", "p.ev.*.B"]
    assert subject_token("ok-token_1") == "ok-token_1"


def test_headers_carry_the_envelope_and_round_trip() -> None:
    rec = recorded()
    out = OutboxMessage.from_recorded(rec)
    h = out.headers()
    assert h[H_MSG_ID] == h["Stratus-Event-Id"] == str(rec.event_id)
    assert h[H_POSITION] == "42"
    assert h["Stratus-Stream"] == "replica-web-3" and h["Stratus-Version"] == "4"
    assert h[H_TYPE] == "ReplicaReady" and h["Stratus-Schema"] == "1"
    assert h["Stratus-Occurred-At"] == "2024-05-01T12:00:00.123456+00:00"
    assert h["Stratus-Causation-Id"] == str(rec.causation_id)
    assert h["Stratus-Correlation-Id"] == str(rec.correlation_id)
    assert h["traceparent"] == "00-abc-def-01" and h["tracestate"] == "k=v"
    assert h["Stratus-Trace-span_kind"] == "consumer"
    assert out.subject(BusConfig()) == "stratus.ev.web.ReplicaReady"
    assert decode_parts(h, out.payload) == rec


def test_optional_headers_are_left_out() -> None:
    rec = recorded(causation_id=None, correlation_id=None, trace={})
    h = OutboxMessage.from_recorded(rec).headers()
    assert "Stratus-Causation-Id" not in h and "traceparent" not in h
    assert decode_parts(h, OutboxMessage.from_recorded(rec).payload) == rec


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda h: h.pop(H_TYPE), EventDecodeError),
        (lambda h: h.pop(H_POSITION), EventDecodeError),
        (lambda h: h.update({"Stratus-Event-Id": "not-a-uuid"}), EventDecodeError),
        (lambda h: (h.pop("Stratus-Event-Id"), h.pop(H_MSG_ID)), EventDecodeError),
        (lambda h: h.update({"Stratus-Occurred-At": "yesterday"}), EventDecodeError),
        (lambda h: h.update({H_TYPE: "NoSuchEvent"}), UnknownEventType),
    ],
)
def test_a_bad_envelope_is_poison(mutate: object, error: type[Exception]) -> None:
    out = OutboxMessage.from_recorded(recorded())
    h = out.headers()
    mutate(h)  # type: ignore[operator]
    with pytest.raises(error):
        decode_parts(h, out.payload)


def test_an_unreadable_payload_is_poison() -> None:
    h = OutboxMessage.from_recorded(recorded()).headers()
    with pytest.raises(EventDecodeError):
        decode_parts(h, b"{not json")


async def test_ensure_stream_creates_file_storage_with_a_duplicate_window(
    js: JetStreamContext, unique: str
) -> None:
    bus = BusConfig(stream=f"E_{unique}", prefix=f"e{unique}", duplicate_window=30.0)
    try:
        info = await ensure_stream(js, bus)
        assert info.config.storage == StorageType.FILE
        assert info.config.subjects == [f"e{unique}.ev.>"]
        assert info.config.duplicate_window == 30.0
        again = await ensure_stream(js, bus)  # idempotent
        assert again.config.duplicate_window == 30.0
        changed = await ensure_stream(
            js, BusConfig(stream=bus.stream, prefix=bus.prefix, duplicate_window=60.0)
        )
        assert changed.config.duplicate_window == 60.0
    finally:
        await js.delete_stream(bus.stream)


async def test_a_published_event_decodes_back_to_the_stored_one(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    await store.append("service-web", [requested("web")])
    [rec] = await store.read_all()
    out = OutboxMessage.from_recorded(rec)
    sub = await nc.subscribe(bus.filter_for(service="web"))
    try:
        ack = await js.publish(out.subject(bus), out.payload, headers=out.headers(), stream=bus.stream)
        dup = await js.publish(out.subject(bus), out.payload, headers=out.headers(), stream=bus.stream)
        assert dup.duplicate and dup.seq == ack.seq  # same event id: dropped by JetStream
        msg = await sub.next_msg(timeout=5)
    finally:
        await sub.unsubscribe()
    assert decode_message(msg) == rec
