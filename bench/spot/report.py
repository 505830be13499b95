"""The bench's figures: per trace and policy, means over the windows; a table or JSON."""

from __future__ import annotations

from typing import Any

from .sim import WindowResult
from .traces import PAPER, TICK_SECONDS, Trace

ORDER = ("ondemand", "round_robin", "skyserve", "stratus", "optimum")


def aggregate(
    traces: list[Trace],
    plan: dict[str, list[int]],
    sims: list[tuple[str, str, int, WindowResult]],
    opts: list[tuple[str, int, float | str]],
    *,
    target: int,
    cold_start: int,
    ticks: int,
    protocol: bool,
) -> dict[str, Any]:
    """``protocol``: the windows are PROTOCOL.md's, so the paper's figures apply."""
    by: dict[tuple[str, str], dict[int, WindowResult]] = {}
    for name, policy, offset, result in sims:
        by.setdefault((name, policy), {})[offset] = result
    notes: list[str] = []
    out: dict[str, Any] = {}
    for trace in traces:
        base = by.get((trace.name, "ondemand"), {})
        policies: dict[str, Any] = {}
        for (tname, policy), results in by.items():
            if tname != trace.name:
                continue
            ratios = [r.cost / base[o].cost for o, r in results.items() if base.get(o) and base[o].cost > 0]
            n = len(results)
            entry: dict[str, Any] = {
                "cost_ratio": round(sum(ratios) / len(ratios), 4) if ratios else None,
                "availability": round(sum(r.available_ticks / r.ticks for r in results.values()) / n, 4),
                "mean_ready": round(sum(r.ready_sum / r.ticks for r in results.values()) / n, 3),
                "mean_spot": round(sum(r.spot_ticks / r.ticks for r in results.values()) / n, 3),
                "mean_on_demand": round(sum(r.on_demand_ticks / r.ticks for r in results.values()) / n, 3),
                "launches": sum(r.launches for r in results.values()),
                "launch_failures": sum(r.launch_failures for r in results.values()),
                "preemptions": sum(r.preemptions for r in results.values()),
                "windows": n,
            }
            paper = PAPER.get(trace.name, {}).get(policy) if protocol and trace.offsets else None
            if paper is not None:
                entry["paper"] = {"cost_ratio": paper[0], "availability": paper[1]}
            policies[policy] = entry
        solved = [(o, c) for t, o, c in opts if t == trace.name and isinstance(c, float)]
        failed = [(o, c) for t, o, c in opts if t == trace.name and isinstance(c, str)]
        if solved or failed:
            ratios = [c / base[o].cost for o, c in solved if base.get(o) and base[o].cost > 0]
            entry = {"cost_ratio": round(sum(ratios) / len(ratios), 4) if ratios else None,
                     "availability": 1.0 if ratios else None, "windows": len(ratios)}  # fmt: skip
            paper = PAPER.get(trace.name, {}).get("optimum") if protocol and trace.offsets else None
            if paper is not None:
                entry["paper"] = {"cost_ratio": paper[0], "availability": None}
            if failed:
                entry["unsolved"] = {str(o): why for o, why in failed}
                notes.append(f"{trace.name}: optimum not solved for {len(failed)} window(s): {failed[0][1]}")
            policies["optimum"] = entry
        ordered = {k: policies[k] for k in ORDER if k in policies}
        ordered |= {k: v for k, v in policies.items() if k not in ordered}
        out[trace.name] = {
            "zones": [z.name for z in trace.zones],
            "offsets": plan[trace.name],
            "policies": ordered,
        }
    return {
        "setup": {
            "tick_seconds": TICK_SECONDS,
            "ticks": ticks,
            "target": target,
            "cold_start_ticks": cold_start,
            "protocol_windows": protocol,
        },
        "traces": out,
        "notes": notes,
    }


def _fig(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_table(out: dict[str, Any]) -> str:
    lines = [
        f"{'trace':<22} {'policy':<12} {'cost':>6} {'avail':>7} {'paper':>15} {'ready':>6} {'spot':>5} "
        f"{'od':>5} {'launch':>7} {'fail':>7} {'preempt':>7} {'win':>4}"
    ]
    for name, trace in out["traces"].items():
        for policy, e in trace["policies"].items():
            paper = e.get("paper")
            ptext = f"{_fig(paper['cost_ratio'], 3)} / {_fig(paper['availability'], 4)}" if paper else ""
            cost, avail = _fig(e["cost_ratio"], 3), _fig(e["availability"], 4)
            ready, spot = _fig(e.get("mean_ready"), 2), _fig(e.get("mean_spot"), 2)
            od = _fig(e.get("mean_on_demand"), 2)
            lines.append(
                f"{name:<22} {policy:<12} {cost:>6} {avail:>7} {ptext:>15} {ready:>6} {spot:>5} {od:>5} "
                f"{e.get('launches', '-'):>7} {e.get('launch_failures', '-'):>7} "
                f"{e.get('preemptions', '-'):>7} "
                f"{e['windows']:>4}"
            )  # fmt: skip
    lines.append(f"simulation {out['seconds']['simulation']}s, total {out['seconds']['total']}s")
    lines.extend(f"note: {n}" for n in out["notes"])
    return "\n".join(lines)
