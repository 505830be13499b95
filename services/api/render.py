"""Plain-text rendering for the CLI: SkyServe's tables, durations and ages (pure functions).

Input is the API's JSON (``ServiceOut`` / ``ReplicaOut`` / ``EventOut`` as dicts); ``now`` is
passed in so tests pin the clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

SERVICE_COLUMNS = ("NAME", "VERSION", "UPTIME", "STATUS", "REPLICAS", "ENDPOINT")
REPLICA_COLUMNS = (
    "SERVICE_NAME", "ID", "VERSION", "IP", "LAUNCHED", "RESOURCES", "STATUS", "REGION", "HOURLY_PRICE",
)  # fmt: skip

_UNITS = (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns separated by two spaces, left-aligned, no trailing spaces (as ``sky serve status``)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def readable_duration(seconds: float | None) -> str:
    """An uptime as SkyServe prints it: ``35s``, ``1m 5s``, ``2h 3m 4s``, ``1d 2h``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return "< 1s"
    rest = int(seconds)
    parts = []
    for unit, size in _UNITS:
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts)


def readable_ago(when: datetime | None, now: datetime) -> str:
    """A launch time as SkyServe prints it: ``a few secs ago``, ``18 mins ago``, ``1 hr ago``."""
    if when is None:
        return "-"
    seconds = max(0.0, (now - when).total_seconds())
    if seconds < 10:
        return "a few secs ago"
    for unit, size in (("day", 86400), ("hr", 3600), ("min", 60), ("sec", 1)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "a few secs ago"  # pragma: no cover - unreachable


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def is_tls(service: Mapping[str, Any]) -> bool:
    """The endpoint serves HTTPS: the latest spec has ``service.tls`` (what the router reads)."""
    section = (service.get("spec") or {}).get("service")
    return isinstance(section, Mapping) and bool(section.get("tls"))


def endpoint_text(endpoint: object, *, tls: bool = False) -> str:
    """SkyServe shows ``host:port`` for HTTP and ``https://host:port`` for a TLS endpoint."""
    if not isinstance(endpoint, str) or not endpoint:
        return "-"
    bare = endpoint.removeprefix("http://").removeprefix("https://")
    return f"https://{bare}" if tls else bare


def endpoint_url(service: Mapping[str, Any]) -> str:
    """The endpoint with its scheme (``status -v``): ``http://host:port`` or ``https://host:port``."""
    shown = endpoint_text(service.get("endpoint"), tls=is_tls(service))
    return shown if shown == "-" or shown.startswith("https://") else f"http://{shown}"


def price_text(price: object) -> str:
    """An hourly price as ``show-gpus`` prints it (``$ 1.487``); ``-`` when unknown or free."""
    if isinstance(price, bool) or not isinstance(price, int | float) or price <= 0:
        return "-"
    return f"$ {price:.3f}"


def region_text(replica: Mapping[str, Any]) -> str:
    """``us-east-1 (use1-az4)``; an Azure zone number reads ``eastus (zone 2)``; ``-`` if none."""
    region, zone = replica.get("region") or "", replica.get("zone") or ""
    if not zone:
        return region or "-"
    zone_text = f"zone {zone}" if zone.isdigit() else zone
    return f"{region} ({zone_text})" if region else zone_text


def _versions(service: Mapping[str, Any]) -> str:
    versions = service.get("versions") or [service.get("version", "-")]
    return ",".join(str(v) for v in versions)


def services_table(services: Sequence[Mapping[str, Any]]) -> str:
    if not services:
        return "Services\nNo existing services."
    rows = [
        (
            str(s["name"]),
            _versions(s),
            readable_duration(s.get("uptime_seconds")),
            str(s["status"]),
            f"{s.get('replicas_ready', 0)}/{s.get('replicas_total', 0)}",
            endpoint_text(s.get("endpoint"), tls=is_tls(s)),
        )
        for s in services
    ]
    return "Services\n" + format_table(SERVICE_COLUMNS, rows)


def replicas_table(services: Sequence[Mapping[str, Any]], now: datetime) -> str:
    rows = []
    for s in services:
        for r in s.get("replicas", []):
            rows.append(
                (
                    str(r["service"]),
                    str(r["replica_id"]),
                    str(r["version"]),
                    r.get("ip") or "-",
                    readable_ago(parse_time(r.get("launched_at")), now),
                    r.get("resources") or "-",
                    str(r["status"]),
                    region_text(r),
                    price_text(r.get("price_per_hour")),
                )
            )
    if not rows:
        return "Service Replicas\nNo existing replicas."
    return "Service Replicas\n" + format_table(REPLICA_COLUMNS, rows)


def policy_text(auto: Mapping[str, Any]) -> str:
    lo, hi = auto["min_replicas"], auto["max_replicas"]
    if auto["policy"] == "fixed":
        text = f"fixed, {lo} replica{'s' if lo != 1 else ''}"
    else:
        if per := auto.get("target_qps_per_accelerator"):  # instance_aware_least_load
            each = ", ".join(f"{acc} {qps:g}" for acc, qps in per.items())
            text = f"autoscaling {lo}-{hi} replicas at QPS per replica by accelerator: {each}"
        else:
            text = f"autoscaling {lo}-{hi} replicas at {auto['target_qps_per_replica']:g} QPS per replica"
        up, down = auto["upscale_delay_seconds"], auto["downscale_delay_seconds"]
        text += f" (upscale delay {up:g}s, downscale delay {down:g}s)"  # fractional seconds kept
    extras = []
    if auto.get("num_overprovision"):
        extras.append(f"overprovision {auto['num_overprovision']}")
    if auto.get("base_ondemand_fallback_replicas"):
        extras.append(f"base on-demand fallback {auto['base_ondemand_fallback_replicas']}")
    if auto.get("dynamic_ondemand_fallback"):
        extras.append("dynamic on-demand fallback")
    return text + ("; " + ", ".join(extras) if extras else "")


def _replica_details(replicas: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per replica: why it is where it is (the scheduler's placement reason) and its status reason."""
    lines = []
    for r in replicas:
        notes = []
        if r.get("placement_reason"):
            notes.append(f"placed: {r['placement_reason']}")
        if r.get("status_reason"):
            notes.append(f"{r['status']}: {r['status_reason']}")
        if notes:
            lines.append(f"  Replica {r['replica_id']}:" + "".join(f"\n    {n}" for n in notes))
    return lines


def details(services: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """The ``status -v`` section: policy, replica counts, the last scale decision, versions."""
    blocks = []
    for s in services:
        lines = [f"{s['name']}:"]
        status = str(s["status"])
        if s.get("status_reason"):
            status += f" ({s['status_reason']})"
        lines.append(f"  Status:      {status}")
        latest = s.get("version")
        mode = f", {str(s['update_mode']).replace('_', '-')} update" if s.get("update_mode") else ""
        lines.append(f"  Versions:    {_versions(s)} (latest {latest}{mode})")
        auto = s.get("autoscaling")
        if auto:
            lines.append(f"  Policy:      {policy_text(auto)}")
            target = auto.get("target_replicas")
            shown = "-" if target is None else str(target)
            lines.append(f"  Replicas:    current {auto['current_replicas']}, target {shown}")
            if auto.get("last_decision_reason"):
                when = readable_ago(parse_time(auto.get("last_decision_at")), now)
                lines.append(f"  Last scale:  {auto['last_decision_reason']} ({when})")
        lines.append(f"  Endpoint:    {endpoint_url(s)}")
        lines += _replica_details(s.get("replicas", []))
        blocks.append("\n".join(lines))
    return "Service Details\n" + "\n".join(blocks)


def failures(services: Sequence[Mapping[str, Any]]) -> str:
    """Why each FAILED* service failed (the table only says that it did); "" if none did."""
    lines = [
        f"{s['name']}: {s['status']}: {s['status_reason']}"
        for s in services
        if str(s.get("status", "")).startswith("FAILED") and s.get("status_reason")
    ]
    return "Failures\n" + "\n".join(lines) if lines else ""


def status_report(services: Sequence[Mapping[str, Any]], now: datetime, *, verbose: bool = False) -> str:
    out = services_table(services) + "\n\n\n" + replicas_table(services, now)
    if verbose and services:
        out += "\n\n\n" + details(services, now)
    elif why := failures(services):
        out += "\n\n\n" + why
    return out


EVENT_COLUMNS = ("POSITION", "TIME (UTC)", "SERVICE", "TYPE", "BY", "DATA")


def _event_row(position: str, stamp: str, service: str, type_: str, by: str, detail: str) -> str:
    return f"{position:>8}  {stamp:<19}  {service:<20}  {type_:<26}  {by:<16}  {detail}"


def event_header() -> str:
    """The header row over ``event_line`` rows (fixed widths: events arrive one at a time)."""
    return _event_row(*EVENT_COLUMNS)


def event_line(event: Mapping[str, Any]) -> str:
    """One event on one line, its whole payload (never cut: ``--json`` for machines)."""
    data = {k: v for k, v in event.get("data", {}).items() if k not in ("type", "service")}
    by = str(data.pop("principal", "") or "-")
    when = parse_time(event.get("occurred_at"))
    stamp = when.strftime("%Y-%m-%d %H:%M:%S") if when else "-"
    detail = json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)
    return _event_row(str(event["position"]), stamp, str(event["service"]), str(event["type"]), by, detail)
