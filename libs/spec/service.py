"""Parsing the ``service:`` section into the flat fields of ``ServiceSection``.

SkyServe 0.14.1's rules are kept (``replicas`` xor ``replica_policy``, autoscaling needs both
``max_replicas`` and ``target_qps_per_replica``, a mapping ``target_qps_per_replica`` goes with
``instance_aware_least_load`` and only with it, ``readiness_probe`` defaults to ``/``), plus
stricter bounds where SkyServe accepts nonsense: negative counts or delays, a zero timeout or
probe interval, a zero QPS target.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from .fields import Issues, Section, check_str, check_str_map, describe, join
from .model import (
    DEFAULT_ENDPOINT_PROBE_INTERVAL_SECONDS,
    INSTANCE_AWARE_POLICY,
    LOAD_BALANCING_POLICIES,
    SPOT_PLACERS,
    Tls,
)
from .ports import parse_single_port

SERVICE_FIELDS = (
    "readiness_probe", "replicas", "workers", "replica_policy", "load_balancing_policy", "load_balancer",
    "ports", "tls", "pool",
)  # fmt: skip
PROBE_FIELDS = (
    "path", "post_data", "initial_delay_seconds", "timeout_seconds", "endpoint_probe_interval_seconds",
    "consecutive_failure_threshold_timeout", "headers",
)  # fmt: skip
LOAD_BALANCER_FIELDS = ("stream_timeout_seconds",)
# SkyServe's key pattern for a per-accelerator QPS target: "A100", "H100:1".
_ACCELERATOR_KEY = re.compile(r"^[A-Z0-9]+(?::[0-9]+)?$")
POLICY_FIELDS = (
    "min_replicas", "max_replicas", "target_qps_per_replica", "upscale_delay_seconds",
    "downscale_delay_seconds", "num_overprovision", "base_ondemand_fallback_replicas",
    "dynamic_ondemand_fallback", "spot_placer",
)  # fmt: skip
TLS_FIELDS = ("keyfile", "certfile")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class ParsedService(NamedTuple):
    fields: dict[str, Any]  # ServiceSection fields, except ``ports``
    port: int | None  # service.ports when written


def parse_service(value: object, path: str, issues: Issues) -> ParsedService:
    sec = Section.of(value, path, issues, SERVICE_FIELDS)
    if sec is None:
        return ParsedService({}, None)
    fields: dict[str, Any] = {}
    if sec.has("pool"):
        sec.issues.add(
            sec.at("pool"), "a pool is SkyPilot's worker pool (`sky jobs pool`), not a service; remove it"
        )
    fields.update(_parse_probe(sec))
    fields.setdefault("endpoint_probe_interval_seconds", DEFAULT_ENDPOINT_PROBE_INTERVAL_SECONDS)
    fields.update(_parse_replicas(sec))
    if (policy := sec.string("load_balancing_policy", choices=LOAD_BALANCING_POLICIES)) is not None:
        fields["load_balancing_policy"] = policy
    lb = sec.section("load_balancer", LOAD_BALANCER_FIELDS)
    if lb is not None and (stream := lb.number("stream_timeout_seconds", positive=True)) is not None:
        fields["stream_timeout_seconds"] = stream
    _check_instance_aware(sec, fields)
    if (tls := _parse_tls(sec)) is not None:
        fields["tls"] = tls
    port = parse_single_port(sec.get("ports"), sec.at("ports"), issues) if sec.has("ports") else None
    return ParsedService(fields, port)


def _parse_probe(sec: Section) -> dict[str, Any]:
    at = sec.at("readiness_probe")
    if not sec.has("readiness_probe"):
        return {}  # SkyServe probes GET / by default
    value = sec.get("readiness_probe")
    if isinstance(value, str):
        path = _check_path(value, at, sec.issues)
        return {} if path is None else {"readiness_path": path}
    probe = Section.of(value, at, sec.issues, PROBE_FIELDS)
    if probe is None:
        return {}
    out: dict[str, Any] = {}
    if not probe.has("path"):
        sec.issues.add(probe.at("path"), "required when readiness_probe is a mapping")
    elif (path := _check_path(probe.get("path"), probe.at("path"), sec.issues)) is not None:
        out["readiness_path"] = path
    if (post_data := _parse_post_data(probe)) is not None:
        out["post_data"] = post_data
    if (delay := probe.number("initial_delay_seconds")) is not None:
        out["initial_delay_seconds"] = delay
    if (timeout := probe.number("timeout_seconds", positive=True)) is not None:
        out["readiness_timeout_seconds"] = timeout
    if (interval := probe.number("endpoint_probe_interval_seconds", positive=True)) is not None:
        out["endpoint_probe_interval_seconds"] = interval
    if (threshold := probe.number("consecutive_failure_threshold_timeout", positive=True)) is not None:
        out["consecutive_failure_threshold_timeout"] = threshold
    if probe.has("headers") and (headers := _parse_headers(probe)) is not None:
        out["headers"] = headers
    return out


def _check_path(value: object, at: str, issues: Issues) -> str | None:
    path = check_str(value, at, issues)
    if path is None:
        return None
    if any(c.isspace() for c in path):
        issues.add(at, f"must be a URL path without spaces, got {path!r}")
        return None
    if not path.startswith("/"):
        issues.add(at, f"must be a URL path starting with '/', got {path!r}; did you mean '/{path}'?")
        return None
    return path


def _parse_post_data(probe: Section) -> dict[str, Any] | None:
    value = probe.get("post_data")
    at = probe.at("post_data")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            probe.issues.add(at, f"is a string but not valid JSON: {exc}")
            return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        probe.issues.add(at, f"must be a mapping (or a JSON object string), got {describe(value)}")
        return None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        probe.issues.add(
            at, "must contain only JSON values (strings, numbers, booleans, null, lists, mappings)"
        )
        return None
    return dict(value)


def _parse_headers(probe: Section) -> dict[str, str] | None:
    headers = check_str_map(probe.get("headers"), probe.at("headers"), probe.issues)
    if headers is None:
        return None
    for name in headers:
        if not _HEADER_NAME.match(name):
            probe.issues.add(probe.at("headers"), f"invalid HTTP header name {name!r}")
            return None
    return headers


def _parse_replicas(sec: Section) -> dict[str, Any]:
    if sec.has("replicas") and sec.has("replica_policy"):
        sec.issues.add(
            sec.at("replicas"),
            "replicas and replica_policy cannot be used together: replicas is a fixed count, "
            "replica_policy sets autoscaling bounds",
        )
        return {}
    if sec.has("replicas") and sec.has("workers"):
        sec.issues.add(sec.at("workers"), "workers is another name of replicas; use only replicas")
        return {}
    if sec.has("workers") and sec.has("replica_policy"):
        sec.issues.add(sec.at("workers"), "workers (a fixed count) cannot be used with replica_policy")
        return {}
    for key in ("replicas", "workers"):
        if sec.has(key):
            # 0 is accepted (as by SkyServe): a service with no replica until an update adds some.
            count = sec.integer(key, minimum=0)
            return {} if count is None else {"min_replicas": count, "max_replicas": count}
    policy = sec.section("replica_policy", POLICY_FIELDS)
    if policy is None:
        return {}
    return _parse_policy(policy)


def _parse_policy(policy: Section) -> dict[str, Any]:
    issues = policy.issues
    out: dict[str, Any] = {}
    if not policy.has("min_replicas"):
        issues.add(policy.at("min_replicas"), "required in replica_policy")
    min_replicas = policy.integer("min_replicas", minimum=0)
    max_replicas = policy.integer("max_replicas", minimum=0)
    qps = _parse_target_qps(policy)
    for name in ("upscale_delay_seconds", "downscale_delay_seconds"):
        if (seconds := policy.number(name)) is not None:
            out[name] = seconds
    for name in ("num_overprovision", "base_ondemand_fallback_replicas"):
        if (number := policy.integer(name, minimum=0)) is not None:
            out[name] = number
    if (dynamic := policy.boolean("dynamic_ondemand_fallback")) is not None:
        out["dynamic_ondemand_fallback"] = dynamic
    if (placer := policy.string("spot_placer", choices=SPOT_PLACERS)) is not None:
        out["spot_placer"] = placer
    if issues.failed(*(policy.at(f) for f in ("min_replicas", "max_replicas", "target_qps_per_replica"))):
        return out
    assert min_replicas is not None  # required and valid, checked just above
    upper = min_replicas if max_replicas is None else max_replicas
    if upper < min_replicas:
        issues.add(policy.at("max_replicas"), f"must be at least min_replicas ({min_replicas}), got {upper}")
    elif qps is not None and max_replicas is None:
        issues.add(
            policy.at("target_qps_per_replica"), "requires max_replicas, the bound autoscaling stops at"
        )
    elif qps is None and upper > min_replicas:
        issues.add(
            policy.at("max_replicas"),
            f"max_replicas ({upper}) above min_replicas ({min_replicas}) requires target_qps_per_replica "
            "to autoscale on",
        )
    fallback = out.get("base_ondemand_fallback_replicas", 0)
    if fallback > upper:
        issues.add(
            policy.at("base_ondemand_fallback_replicas"),
            f"must be at most max_replicas ({upper}), got {fallback}",
        )
    out.update(min_replicas=min_replicas, max_replicas=upper, target_qps_per_replica=qps)
    return out


def _parse_target_qps(policy: Section) -> float | dict[str, float] | None:
    """A number (QPS per replica) or {accelerator: QPS} for ``instance_aware_least_load``."""
    at = policy.at("target_qps_per_replica")
    value = policy.get("target_qps_per_replica")
    if not isinstance(value, Mapping):
        return policy.positive_number("target_qps_per_replica")
    if not value:
        policy.issues.add(at, "must name at least one accelerator, e.g. {A100: 10, L4: 2}")
        return None
    out: dict[str, float] = {}
    for key, qps in value.items():
        if not isinstance(key, str) or not _ACCELERATOR_KEY.match(key):
            policy.issues.add(
                at, f"keys must be accelerator names in capitals such as A100 or H100:1, got {describe(key)}"
            )
        elif isinstance(qps, bool) or not isinstance(qps, (int, float)) or not qps > 0:
            policy.issues.add(join(at, key), f"must be a number greater than 0, got {describe(qps)}")
        else:
            out[key] = float(qps)
    return out if len(out) == len(value) else None


def _check_instance_aware(sec: Section, fields: dict[str, Any]) -> None:
    if sec.issues.failed(sec.at("replica_policy"), sec.at("load_balancing_policy")):
        return
    per_accelerator = isinstance(fields.get("target_qps_per_replica"), dict)
    instance_aware = fields.get("load_balancing_policy") == INSTANCE_AWARE_POLICY
    if per_accelerator and not instance_aware:
        sec.issues.add(
            sec.at("replica_policy.target_qps_per_replica"),
            f"a mapping of accelerator to QPS needs load_balancing_policy: {INSTANCE_AWARE_POLICY}",
        )
    elif instance_aware and not per_accelerator:
        sec.issues.add(
            sec.at("load_balancing_policy"),
            f"{INSTANCE_AWARE_POLICY} needs replica_policy.target_qps_per_replica as a mapping of "
            "accelerator to QPS, e.g. {A100: 10, L4: 2}",
        )


def _parse_tls(sec: Section) -> Tls | None:
    tls = sec.section("tls", TLS_FIELDS)
    if tls is None:
        return None
    out = {}
    for name in TLS_FIELDS:
        if not tls.has(name):
            sec.issues.add(tls.at(name), "required in tls (path to the PEM file)")
        elif (text := tls.string(name)) is not None:
            out[name] = text
    return Tls(**out) if len(out) == len(TLS_FIELDS) else None
