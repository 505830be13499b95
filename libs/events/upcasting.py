"""Upcasters: named, tested functions that lift an old stored payload to the current schema.

A stored event carries its type tag and the schema version it was written with. When a type's
schema changes in a breaking way, bump ``CURRENT_SCHEMA[tag]`` and register an upcaster from the
old version; reading applies the chain ``v -> v+1 -> ... -> current`` to the raw dict before
decoding, so old history stays readable forever and nothing stored is ever rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

# Schema version that encoders write today, per tag (absent = 1).
CURRENT_SCHEMA: dict[str, int] = {"QpsSampled": 2}

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(tag: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        key = (tag, from_version)
        if key in _UPCASTERS:
            raise ValueError(f"an upcaster for {tag} v{from_version} is already registered")
        _UPCASTERS[key] = fn
        return fn

    return register


def current_schema(tag: str) -> int:
    return CURRENT_SCHEMA.get(tag, 1)


def upcast(tag: str, schema_version: int, payload: Payload) -> Payload:
    target = current_schema(tag)
    if schema_version > target or schema_version < 1:
        # Written by a newer version of this code (or corrupt): reading it as today's schema
        # would silently misread it.
        raise LookupError(f"{tag} schema v{schema_version} is not one this code reads (v1..v{target})")
    version = schema_version
    while version < target:
        fn = _UPCASTERS.get((tag, version))
        if fn is None:
            raise LookupError(f"no upcaster for {tag} from schema v{version} to v{version + 1}")
        payload = fn(payload)
        version += 1
    return payload


@upcaster("QpsSampled", 1)
def qps_sampled_v1_to_v2(payload: Payload) -> Payload:
    """v1 stored a rate ``qps`` over ``window_seconds``; v2 stores the request count.

    v1 also had no ``router_id`` (one router only) and no ``window_start``.
    """
    out = dict(payload)
    qps = float(out.pop("qps", 0.0))
    window = float(out.get("window_seconds", 60.0))
    out["window_seconds"] = window
    out["requests"] = round(qps * window)
    out.setdefault("router_id", "router-v1")
    out.setdefault("window_start", 0.0)
    return out
