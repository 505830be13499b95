"""Decoding a spec recorded in an event, leniently: the fold must never fail on the log.

``spec_from_dict`` is strict (it is for specs that must be valid). A recorded spec may come from
an older Stratus, be partial (tests, hand-written events) or even be garbage; replaying the log
must still work. ``decode_recorded_spec`` keeps every field whose value has the right type and
replaces the others with the default, recursively, so the result is always a ``ServiceSpec``:

    decode_recorded_spec({})                                  -> all defaults (GET /, 1 replica)
    decode_recorded_spec({"service": {"min_replicas": "x"}})  -> min_replicas 1 (the default)

Values that are well typed but out of range (a negative count) are kept; the readers that act on
them (``libs.fleet.policy``) clamp them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from .model import Resources, ServiceSection, ServiceSpec

S = TypeVar("S", bound=msgspec.Struct)

# Required fields of the model, for a recorded spec that lacks them.
_FALLBACKS: dict[tuple[type[msgspec.Struct], str], Any] = {
    (ServiceSection, "ports"): 8080,
    (ServiceSpec, "run"): "",
}
_NESTED: dict[tuple[type[msgspec.Struct], str], type[msgspec.Struct]] = {
    (ServiceSpec, "service"): ServiceSection,
    (ServiceSpec, "resources"): Resources,
}


def decode_recorded_spec(data: object) -> ServiceSpec:
    """A ``ServiceSpec`` from ``spec_to_dict`` output, whatever is wrong with it (never raises)."""
    return _lenient(ServiceSpec, data if isinstance(data, Mapping) else {})


def _lenient(cls: type[S], data: Mapping[Any, Any]) -> S:
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError:
        pass  # field by field below
    kept: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        nested = _NESTED.get((cls, field.name))
        value = data.get(field.name, msgspec.NODEFAULT)
        if nested is not None:
            kept[field.name] = _lenient(nested, value if isinstance(value, Mapping) else {})
            continue
        if value is not msgspec.NODEFAULT:
            try:
                kept[field.name] = msgspec.convert(value, field.type)
                continue
            except msgspec.ValidationError:
                pass
        if field.required:
            kept[field.name] = _FALLBACKS[(cls, field.name)]
    return cls(**kept)
