"""Parsing ports: ``8080``, ``"8080"``, ``"8080-8090"`` or a list of those."""

from __future__ import annotations

from .fields import Issues, describe

MIN_PORT = 1
MAX_PORT = 65535


def parse_ports(value: object, path: str, issues: Issues) -> list[int] | None:
    """All ports, ranges expanded, duplicates dropped, in the order written."""
    items = value if isinstance(value, list) else [value]
    if not items:
        issues.add(path, "must list at least one port")
        return None
    ports: list[int] = []
    ok = True
    for i, item in enumerate(items):
        at = f"{path}[{i}]" if isinstance(value, list) else path
        parsed = _parse_one(item, at, issues)
        if parsed is None:
            ok = False
            continue
        ports.extend(p for p in parsed if p not in ports)
    return ports if ok else None


def parse_single_port(value: object, path: str, issues: Issues) -> int | None:
    parsed = _parse_one(value, path, issues)
    if parsed is None:
        return None
    if len(parsed) != 1:
        issues.add(path, f"must be a single port, got the range {value!r}")
        return None
    return parsed[0]


def _parse_one(item: object, path: str, issues: Issues) -> list[int] | None:
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        issues.add(path, f'must be a port number or a range like "8080-8090", got {describe(item)}')
        return None
    if isinstance(item, int):
        return [item] if _in_range(item, path, issues) else None
    low_text, dash, high_text = item.strip().partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if dash else low
    except ValueError:
        issues.add(path, f'must be a port number or a range like "8080-8090", got {item!r}')
        return None
    if not (_in_range(low, path, issues) and _in_range(high, path, issues)):
        return None
    if high < low:
        issues.add(path, f"range {item!r} ends before it starts")
        return None
    return list(range(low, high + 1))


def _in_range(port: int, path: str, issues: Issues) -> bool:
    if MIN_PORT <= port <= MAX_PORT:
        return True
    issues.add(path, f"port {port} is out of range {MIN_PORT}-{MAX_PORT}")
    return False
