"""Result rows from measurements: where a :class:`~convbench.timing.Measurement` becomes
columns of cases.parquet and rows of samples.parquet (used by the worker and by ``ab``)."""

from __future__ import annotations

from typing import Any

from convbench.contention import Load
from convbench.cpu_topology import available_cpus
from convbench.timing import Measurement


def timing_fields(m: Measurement, timer: str) -> dict[str, Any]:
    """The statistics, convergence and contention columns of one timed case."""
    s = m.stats
    load = m.load
    return {
        "timer": timer, "median": s.median, "q1": s.q1, "q3": s.q3, "iqr": s.iqr, "ci_low": s.ci_low,
        "ci_high": s.ci_high, "mean": s.mean, "stdev": s.stdev, "min": s.min, "max": s.max, "n": s.n,
        "inner": m.inner, "converged": m.converged, "warmup_iters": m.warmup_iters, "timing_seconds": m.elapsed,
        "contended": m.contended, "contention": m.contention, "dropped": m.dropped, "quiet_wait": m.quiet_waited,
        "foreign_cpu": None if load is None else load.foreign_cpu, "steal": None if load is None else load.steal,
        "cpu_pressure": None if load is None else load.cpu_pressure, "page_faults": m.page_faults,
        "speed_compute": None if load is None else load.speed_compute,
        "speed_memory": None if load is None else load.speed_memory,
    }  # fmt: skip


def rates(row: dict[str, Any]) -> dict[str, Any]:
    """Throughput (items/s), GFLOP/s and GB/s of a row with a positive median."""
    median = row.get("median")
    if not median or median <= 0:
        return {}
    return {"throughput": row["batch"] / median, "gflops": row["flops"] / median / 1e9, "gbps": row["bytes"] / median / 1e9}


def threads_all_cores(threads: int | None, device: str) -> bool | None:
    """Whether a CPU case uses as many threads as there are usable cores (the setting most
    fragile under contention: one busy neighbour stalls a thread at every barrier)."""
    if device != "cpu" or threads is None:
        return None
    return int(threads) >= len(available_cpus())


def _load_fields(load: Load | None) -> dict[str, Any]:
    if load is None:
        return dict.fromkeys(("wall", "cpu", "foreign_cpu", "steal", "cpu_pressure", "runnable", "freq_mhz", "speed_compute", "speed_memory"))
    return {
        "wall": load.wall, "cpu": load.own_cpu * load.wall, "foreign_cpu": load.foreign_cpu, "steal": load.steal,
        "cpu_pressure": load.cpu_pressure, "runnable": load.runnable, "freq_mhz": load.freq_mhz,
        "speed_compute": load.speed_compute, "speed_memory": load.speed_memory,
    }  # fmt: skip


def sample_rows(case_id: str, m: Measurement, ratios: list[float] | None = None, side: str | None = None) -> list[dict[str, Any]]:
    """One samples.parquet row per sample of ``m`` (per round when interleaved: the
    round's load, its ratio to the baseline). ``wall`` and ``cpu`` are the seconds of the
    whole sample (round), ``cpu`` the timed process's own CPU seconds in it."""
    out = []
    for i, seconds in enumerate(m.samples):
        load = m.loads[i] if i < len(m.loads) else None
        row = {
            "case_id": case_id, "index": i, "seconds": seconds, "side": side,
            "ratio": ratios[i] if ratios and i < len(ratios) else None,
            "kept": m.kept[i] if i < len(m.kept) else True,
            "contended": None if m.contended is None or i >= len(m.reasons) else m.reasons[i] is not None,
            "page_faults": m.faults[i] if i < len(m.faults) else None,
            **_load_fields(load),
        }  # fmt: skip
        out.append(row)
    return out

