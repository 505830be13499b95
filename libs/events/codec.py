"""Encoding events to bytes and back, by stable tag, through upcasters."""

from __future__ import annotations

from typing import Any

import msgspec

from .errors import EventDecodeError, UnknownEventType
from .types import EVENT_TYPES_BY_TAG, Event, event_tag
from .upcasting import current_schema, upcast

_encoder = msgspec.json.Encoder()
_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    tag: msgspec.json.Decoder(cls) for tag, cls in EVENT_TYPES_BY_TAG.items()
}


def encode(event: Event) -> tuple[str, int, bytes]:
    """Return (tag, schema_version, json payload). The payload includes the ``type`` tag."""
    tag = event_tag(event)
    return tag, current_schema(tag), _encoder.encode(event)


def decode(tag: str, schema_version: int, payload: bytes | str) -> Event:
    decoder = _decoders.get(tag)
    if decoder is None:
        raise UnknownEventType(tag)
    try:
        if schema_version == current_schema(tag):
            return decoder.decode(payload)  # type: ignore[no-any-return]
        raw = _dict_decoder.decode(payload)
        raw = upcast(tag, schema_version, raw)
        raw["type"] = tag
        return msgspec.convert(raw, EVENT_TYPES_BY_TAG[tag])
    except (msgspec.DecodeError, msgspec.ValidationError, LookupError, ValueError, TypeError) as exc:
        raise EventDecodeError(tag, str(exc)) from exc


def to_builtins(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(event)
    return out
