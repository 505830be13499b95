"""Figures and their printing: each next to its target, PASS/SHORT, and a ratio to a baseline
measured in the same run; percentiles; a clock for time spent in the garbage collector."""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

TARGETS = {
    "append_batched_eps": 10_000.0,  # events/s appended in batches
    "append_single_eps": 1_000.0,  # single-event appends/s
    "latency_p50_ms": 5.0,  # append-to-handled p50
    "rebuild_1m_s": 20.0,  # 1M-event rebuild
}


@dataclass
class Figure:
    section: str
    name: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 10000"
    ok: bool | None = None
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None  # value / baseline_value
    note: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, fig: Figure) -> Figure:
        if fig.baseline_value:
            fig.ratio = fig.value / fig.baseline_value
        self.figures.append(fig)
        print(_fmt_row(fig), flush=True)
        return fig


def num(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def mark(fig: Figure) -> str:
    return "" if fig.ok is None else ("PASS" if fig.ok else "SHORT")


def _fmt_row(fig: Figure) -> str:
    base = f"{num(fig.baseline_value)} {fig.baseline}" if fig.baseline_value is not None else ""
    ratio = f"x{fig.ratio:.2f}" if fig.ratio is not None else ""
    target = fig.target
    return (
        f"  {fig.name:<46} {num(fig.value):>10} {fig.unit:<8} {target:<10} {mark(fig):<5} {ratio:>7}  {base}"
    )


def header(title: str) -> None:
    print(f"\n== {title}", flush=True)
    print(f"  {'figure':<46} {'value':>10} {'unit':<8} {'target':<10} {'mark':<5} {'ratio':>7}  baseline")


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


class GcClock:
    """Wall time spent in the cyclic garbage collector while active (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.collections = 0
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.spent += time.perf_counter() - self._t
            self.collections += 1

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)
