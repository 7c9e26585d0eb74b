"""The canary: a short fixed workload every run times at its start, middle and end.

It is the same NumPy work on every machine and in every version of convbench (copy 8 MiB,
then multiply two 96x96 float64 matrices, small enough that BLAS stays on one thread), so
two runs' canaries differ only by the machine: its speed, its clocks and its neighbours
at that moment. :mod:`convbench.compare` uses them to tell a machine that got slower from
code that did. Recorded in run.json under ``canary``, one entry per point.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

import numpy as np

from convbench.contention import Monitor
from convbench.schema import now_iso
from convbench.timing import Guard, TimingConfig, host_sampler, measure

#: How the canary is timed (about a quarter of a second).
CANARY_TIMING = TimingConfig(
    warmup_iters=3, warmup_time=0.02, min_sample_time=0.002, min_samples=15, max_samples=200,
    precision=0.02, max_time=0.25, guard="wait", quiet_wait=2.0,
)  # fmt: skip


def _step() -> Any:
    rng = np.random.default_rng(0)
    src = rng.standard_normal(1 << 20)
    dst = np.empty_like(src)
    mat = rng.standard_normal((96, 96))

    def step() -> None:
        np.copyto(dst, src)
        mat @ mat

    return step


def run_canary(at: str, run_timing: TimingConfig | None = None) -> dict[str, Any]:
    """Time the canary once; ``at`` names the point of the run (start, middle, end).

    With the run's guard in mode ``wait`` (``run_timing``; the default on CPUs) it first
    waits, at most 2 s, for quiet (an idle worker's threads may still spin for a moment)
    and retakes contended samples; otherwise it only flags them.
    """
    waits = run_timing is None or run_timing.guard_for("cpu") == "wait"
    config = CANARY_TIMING if waits else CANARY_TIMING.model_copy(update={"guard": "flag", "quiet_wait": 0.0})
    guard = Guard.for_case(Monitor(rule=config.rule()), config, "cpu")
    m = measure(host_sampler(_step(), lambda: None), config, guard=guard)
    load = m.load
    return {
        "at": at, "time": now_iso(), "median": m.stats.median, "ci_low": m.stats.ci_low, "ci_high": m.stats.ci_high,
        "n": m.stats.n, "contended": m.contended, "contention": m.contention,
        "foreign_cpu": None if load is None else load.foreign_cpu, "cpu_pressure": None if load is None else load.cpu_pressure,
        "steal": None if load is None else load.steal,
    }  # fmt: skip


def canary_median(entries: Iterable[dict[str, Any]]) -> float | None:
    """The median of the canary times of one or more runs (None when none recorded)."""
    values = [float(e["median"]) for e in entries if isinstance(e, dict) and e.get("median")]
    return statistics.median(values) if values else None


def canary_drift(entries: Iterable[dict[str, Any]]) -> float | None:
    """Slowest over fastest canary time within one run (1.0: steady; None: < 2 points)."""
    values = [float(e["median"]) for e in entries if isinstance(e, dict) and e.get("median")]
    return max(values) / min(values) if len(values) >= 2 and min(values) > 0 else None
