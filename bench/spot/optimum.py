"""The offline optimum of one window (knows the whole trace): PROTOCOL.md's integer program,
solved with HiGHS (``pip install highspy``, the ``bench`` extra).

Variables per tick ``t``: ``n[z, t]`` spot replicas allocated in zone ``z`` (at most the
zone's capacity), ``o[t]`` on-demand replicas; ``r[z, t] <= n[z, s]`` and ``q[t] <= o[s]`` for
every ``s`` in ``t - cold_start .. t`` (READY: allocated through the whole cold start). For
every tick after the cold start, ``target <= sum_z r[z, t] + q[t] <= target + 1``. Minimise
the protocol's cost over ``[cold_start, ticks)``: ``sum n + 3 sum o``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

ON_DEMAND_PRICE = 3.0


class OptimumUnavailable(RuntimeError):
    """HiGHS is not installed, or it found no optimal solution in time (the message says)."""


def _highs() -> Any:
    try:
        import highspy
    except ImportError as exc:
        raise OptimumUnavailable(
            "the offline optimum needs HiGHS: pip install highspy (or pip install -e '.[bench]')"
        ) from exc
    return highspy


def _quiet_highs(highspy: Any) -> Any:
    """A ``Highs`` instance without its banner on stdout (it would break ``--json``)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    return h


def solve(caps: list[list[int]], *, target: int, cold_start: int, time_limit: float = 60.0) -> float:
    """The minimal cost of the window whose per-tick zone capacities are ``caps``."""
    highspy = _highs()
    import numpy as np

    ticks = len(caps)
    zones = len(caps[0]) if caps else 0
    top = target + 1

    # Column layout: n[z, t], r[z, t] for each zone, then o[t], q[t].
    def n(z: int, t: int) -> int:
        return (2 * z) * ticks + t

    def r(z: int, t: int) -> int:
        return (2 * z + 1) * ticks + t

    o0 = 2 * zones * ticks
    q0 = o0 + ticks
    cols = q0 + ticks
    cost = np.zeros(cols)
    lower = np.zeros(cols)
    upper = np.zeros(cols)
    for z in range(zones):
        for t in range(ticks):
            upper[n(z, t)] = min(caps[t][z], top)
            upper[r(z, t)] = min(caps[t][z], top)
            if t >= cold_start:
                cost[n(z, t)] = 1.0
    upper[o0:q0] = target
    upper[q0:cols] = target
    cost[o0 + cold_start : q0] = ON_DEMAND_PRICE
    starts: list[int] = []
    index: list[int] = []
    value: list[float] = []
    row_lo: list[float] = []
    row_hi: list[float] = []

    def row(entries: list[tuple[int, float]], lo: float, hi: float) -> None:
        starts.append(len(index))
        for col, coef in entries:
            index.append(col)
            value.append(coef)
        row_lo.append(lo)
        row_hi.append(hi)

    inf = highspy.kHighsInf
    for t in range(ticks):
        for s in range(max(0, t - cold_start), t + 1):
            for z in range(zones):
                row([(r(z, t), 1.0), (n(z, s), -1.0)], -inf, 0.0)
            row([(q0 + t, 1.0), (o0 + s, -1.0)], -inf, 0.0)
        if t < cold_start:
            for z in range(zones):
                upper[r(z, t)] = 0.0
            upper[q0 + t] = 0.0
        else:
            row([*((r(z, t), 1.0) for z in range(zones)), (q0 + t, 1.0)], float(target), float(top))
    h = _quiet_highs(highspy)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("threads", 1)
    h.addVars(cols, lower, upper)
    h.changeColsCost(cols, np.arange(cols, dtype=np.int32), cost)
    # Only the allocations are integers: given integer n and o, the best READY counts are
    # their minima over the cold start, integers too, so r and q may stay continuous.
    spot_cols = [c for z in range(zones) for c in range(n(z, 0), n(z, 0) + ticks)]
    integer = np.array(spot_cols + list(range(o0, q0)),
                       dtype=np.int32)  # fmt: skip
    h.changeColsIntegrality(len(integer), integer, np.full(len(integer), highspy.HighsVarType.kInteger))
    h.addRows(
        len(row_lo),
        np.array(row_lo),
        np.array(row_hi),
        len(index),
        np.array(starts, dtype=np.int32),
        np.array(index, dtype=np.int32),
        np.array(value),
    )
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise OptimumUnavailable(f"HiGHS: {h.modelStatusToString(status)}")
    return float(h.getInfo().objective_function_value)
