"""The public event contract as an AsyncAPI 3.0 document, generated from the msgspec types.

Everything in it comes from code: the event types (``types.ALL_EVENT_TYPES``) and their JSON
schemas (``msgspec.json.schema_components``), the subjects and headers (``bus.py``), each type's
schema version (``upcasting.py``). It cannot drift: ``docs/events.asyncapi.yaml`` is this
module's output, and a test fails when the checked-in file differs.

    python -m libs.events.asyncapi            # print the YAML
    python -m libs.events.asyncapi --write    # (re)write docs/events.asyncapi.yaml
    python -m libs.events.asyncapi --check    # exit 1 if the checked-in file is stale
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any

import msgspec
import yaml

from . import bus
from .types import ALL_EVENT_TYPES
from .upcasting import current_schema

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "events.asyncapi.yaml"
CONTRACT_VERSION = "1.1.0"

DESCRIPTION = """\
Stratus records every decision as an event in one append-only log (Postgres) and publishes the
log, in order, to one NATS JetStream stream. Other platforms integrate by subscribing to it.

## Subjects

Every event is published on `{prefix}.ev.{service}.{eventType}` (`prefix` is `stratus` unless
the stack sets `STRATUS_BUS_PREFIX`; the stream is `STRATUS`, or `STRATUS_<PREFIX>`). Filter by
service (`stratus.ev.chat.>`), by type (`stratus.ev.*.ReplicaReady`), or take everything
(`stratus.ev.>`). A service name is one subject token: characters other than letters, digits,
`_` and `-` are replaced by `_`.

## Delivery guarantees

- **At least once.** The outbox relay publishes every event of the log with `Nats-Msg-Id` = the
  event id; JetStream drops a re-publication within its duplicate window, but a consumer must
  still be idempotent: key on `Stratus-Event-Id` (or `Stratus-Position`).
- **In log order.** Events reach the stream in the order of `Stratus-Position` (global, commit
  ordered, gap-free for readers). Within one stream (`Stratus-Stream`: `service-<name>` or
  `replica-<service>-<id>`), `Stratus-Version` counts from 1 without gaps.
- **Postgres is the source of truth.** If the stream loses messages (retention:
  `STRATUS_BUS_MAX_AGE` / `STRATUS_BUS_MAX_BYTES`), the log still has them: `GET /v1/events`
  pages through the whole history and `GET /v1/events/stream` follows it.
- **Causation.** `Stratus-Correlation-Id` is the id of the user action (API request) an event
  descends from; `Stratus-Causation-Id` is the event (or request) that directly caused it.
  W3C `traceparent` / `tracestate` headers carry the trace context.

## Versioning rules

- A type's tag (`Stratus-Type`, the payload's `type`) never changes; renaming a class keeps it.
- A new field always has a default: old events still decode, and readers must ignore fields
  they do not know (every schema here allows additional properties for that reason).
- A breaking change is a new event type, or a new schema version of the same type (header
  `Stratus-Schema`, `x-stratus-schema-version` below) with a named, tested upcaster, so that the
  log's old payloads read as the new schema. A reader seeing a schema newer than it knows must
  not guess: treat it as unreadable.
- This document's `info.version` follows semver: minor for new types or fields, major for a
  removed type or field.
"""


def _headers_schema() -> dict[str, Any]:
    uuid_ = {"type": "string", "format": "uuid"}
    props: dict[str, Any] = {
        bus.H_MSG_ID: {**uuid_, "description": "JetStream de-duplication id: the event id."},
        bus.H_EVENT_ID: {**uuid_, "description": "The event's id (idempotency key)."},
        bus.H_POSITION: {"type": "string", "pattern": "^[0-9]+$", "description": "Global log position."},
        bus.H_STREAM: {"type": "string", "description": "service-<name> or replica-<service>-<id>."},
        bus.H_VERSION: {"type": "string", "pattern": "^[0-9]+$", "description": "Position in its stream."},
        bus.H_TYPE: {"type": "string", "description": "The event type's tag."},
        bus.H_SCHEMA: {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "The payload's schema version.",
        },
        bus.H_OCCURRED_AT: {"type": "string", "format": "date-time"},
        bus.H_CAUSATION: {**uuid_, "description": "What caused it: an event id or an API request id."},
        bus.H_CORRELATION: {**uuid_, "description": "The user action it descends from."},
        "traceparent": {"type": "string", "description": "W3C trace context."},
        "tracestate": {"type": "string"},
    }
    required = [bus.H_MSG_ID, bus.H_EVENT_ID, bus.H_POSITION, bus.H_STREAM, bus.H_VERSION,
                bus.H_TYPE, bus.H_SCHEMA, bus.H_OCCURRED_AT]  # fmt: skip
    return {"type": "object", "properties": props, "required": required}


def _open(schema: dict[str, Any]) -> dict[str, Any]:
    """msgspec's schemas, with readers told to ignore fields they do not know."""
    if schema.get("type") == "object" and "additionalProperties" not in schema:
        schema = {**schema, "additionalProperties": True}
    return schema


def document() -> dict[str, Any]:
    (refs, components) = msgspec.json.schema_components(
        ALL_EVENT_TYPES, ref_template="#/components/schemas/{name}"
    )
    schemas = {name: _open(s) for name, s in sorted(components.items())}
    schemas["EnvelopeHeaders"] = _headers_schema()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for cls, ref in zip(ALL_EVENT_TYPES, refs, strict=True):
        tag = str(cls.__struct_config__.tag)
        doc = inspect.getdoc(cls) or ""
        if doc == inspect.getdoc(cls.__mro__[1]):
            doc = ""  # inherited from Event: says nothing of this type
        messages[tag] = {
            "name": tag,
            "title": tag,
            "summary": doc.split("\n\n")[0].replace("\n", " ") if doc else f"A {tag} event.",
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/EnvelopeHeaders"},
            "payload": ref,
            "x-stratus-schema-version": current_schema(tag),
        }
        channels[tag] = {
            "address": "{prefix}.ev.{service}." + tag,
            "title": tag,
            "parameters": {
                "prefix": {"$ref": "#/components/parameters/prefix"},
                "service": {"$ref": "#/components/parameters/service"},
            },
            "messages": {tag: {"$ref": f"#/components/messages/{tag}"}},
        }
        operations[f"on{tag}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{tag}"},
            "summary": f"Subscribe to {tag} events (JetStream, at least once, in log order).",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Stratus events", "version": CONTRACT_VERSION, "description": DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "The stack's NATS with JetStream (NATS_URL); the local default shown.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "parameters": {
                "prefix": {"default": "stratus", "description": "STRATUS_BUS_PREFIX"},
                "service": {"description": "The service's name, as one subject token."},
            },
        },
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the document reads as text."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    header = "# Generated by `python -m libs.events.asyncapi --write`: do not edit by hand.\n"
    body = yaml.dump(document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The Stratus event contract (AsyncAPI 3.0).")
    p.add_argument("--write", action="store_true", help=f"write {DOC_PATH.name} under docs/")
    p.add_argument("--check", action="store_true", help="exit 1 if the checked-in file differs")
    args = p.parse_args(argv)
    text = render()
    if args.write:
        DOC_PATH.write_text(text)
        return 0
    if args.check:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is stale: run `python -m libs.events.asyncapi --write`", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
