"""Synthetic run folders for the report tests: every status, two backends, both modes,
hostile strings (``<script>``, ``<img onerror>``) in names, reasons and the environment.

Folders are written with :class:`convbench.results.RunFolder`, as the runner writes
them, but with made-up, seeded timings, so they build in milliseconds and the same
arguments give the same bytes (the start time is fixed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from convbench.cases import Case
from convbench.results import RunFolder, empty_row

XSS = "<script>alert(1)</script>"
XSS_IMG = '<img src=x onerror="alert(2)">'

#: (workload id, channels, size): the second one's name is a script tag.
WORKLOADS = [("dw_a", 32, 16), (XSS, 16, 8), ("dw_c", 64, 8)]


def _case(suite: str, workload: str, channels: int, size: int, **key: object) -> Case:
    params = {"channels": channels, "size": size, "kernel": 3, "stride": 1}
    return Case(suite=suite, workload=workload, kind="depthwise", params=params, **key)


def make_run(
    path: Path,
    suite: str = "synthetic",
    host: str = "host-a",
    slowdown: float = 1.0,
    seed: int = 0,
    started: str = "2026-01-01T00:00:00+00:00",
    failures: bool = True,
    workloads: list[tuple[str, int, int]] | None = None,
    contention: bool = False,
) -> Path:
    """Write a complete run folder at ``path`` and return it.

    Cases: WORKLOADS x (native, diagonalwise) x (torch, reference) x (inference,
    training) on CPU at batch 1, timed (diagonalwise interleaved with native, with
    per-round ratios); CUDA cases of torch skipped; with ``failures``, one workload
    ``broken`` whose torch cases error (with a traceback) and whose reference diagonalwise
    case mismatches. ``slowdown`` multiplies every time (for comparisons). With
    ``contention``, timed cases carry contention telemetry (see :func:`telemetry`: the
    torch cases of ``dw_a`` contended, a hostile string in their reason) and run.json a
    canary of three points, the middle one contended.
    """
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    plan: list[tuple[Case, str]] = []
    workloads = list(workloads or WORKLOADS)
    if failures:
        workloads.append(("broken", 8, 8))
    for workload, channels, size in workloads:
        for backend in ("torch", "reference"):
            for mode in ("inference", "training"):
                for variant in ("native", "diagonalwise"):
                    c = _case(suite, workload, channels, size, variant=variant, backend=backend, mode=mode, batch=1, threads=2)
                    cases.append(c)
                    if workload == "broken":
                        status = "error" if backend == "torch" else "mismatch" if variant == "diagonalwise" else "ok"
                    else:
                        status = "ok"
                    plan.append((c, status))
        for mode in ("inference", "training"):
            for variant in ("native", "diagonalwise"):
                c = _case(suite, workload, channels, size, variant=variant, backend="torch", device="cuda", mode=mode, batch=8)
                cases.append(c)
                plan.append((c, "skipped"))

    meta = {
        "suite": suite,
        "suite_path": f"suites/{suite}.yaml",
        "suite_text": f"name: {suite}\ndescription: 'synthetic layers {XSS}'\n",
        "preset": "quick",
        "filter": None,
        "convbench_version": "0.1.0",
        "options": {"timing": {"min_samples": 8, "precision": 0.05}, "timeout": 60, "tolerance": {"float32": 1e-4}, "interpreters": {}},
        "cases": [c.model_dump() for c in cases],
        "environment": {
            "core": {
                "hostname": host, "cpu": f"Test CPU {XSS_IMG}", "architecture": "x86_64", "cpu_logical_cores": 2,
                "cpu_usable_cores": 2, "memory_total_bytes": 8 * 2**30, "python_version": "3.11.7",
                "numpy_version": "2.0.0", "convbench_version": "0.1.0", "git_revision": "0123456789abcdef",
                "git_dirty": False, "thread_env": {"OMP_NUM_THREADS": None}, "gpus": None,
            },
            "backends": {
                "torch:cpu": {"name": "torch", "available": True, "version": "2.13.0+cpu", "devices": ["cpu"],
                              "environment": {"torch": "2.13.0+cpu", "num_threads": 2},
                              "peaks": {"float32/threads=2": {"flops_per_s": 50e9, "bytes_per_s": 10e9}}},
                "reference:cpu": {"name": "reference", "available": True, "version": "0.1.0", "devices": ["cpu"]},
            },
        },
    }  # fmt: skip
    if contention:
        meta["canary"] = [
            {"at": at, "time": started, "median": 1e-3 * f * slowdown, "ci_low": 0.99e-3 * f * slowdown, "ci_high": 1.01e-3 * f * slowdown,
             "n": 15, "contended": at == "middle", "contention": CONTENTION if at == "middle" else None,
             "foreign_cpu": 0.82 if at == "middle" else 0.01, "cpu_pressure": 0.5 if at == "middle" else 0.0, "steal": 0.0}
            for at, f in (("start", 1.0), ("middle", 1.04), ("end", 1.01))
        ]  # fmt: skip
    folder = RunFolder.create(path, meta)
    folder.meta["started"] = started
    folder.save_meta()
    base_times: dict[str, float] = {}
    for c, status in plan:
        row = empty_row(c)
        channels, size = c.params["channels"], c.params["size"]
        macs = channels * size * size * 9
        row.update(macs=macs, executed_macs=macs * (32 if c.variant == "diagonalwise" else 1), flops=2 * macs,
                   bytes=4 * (2 * channels * size * size + 9 * channels), param_count=9 * channels, status=status)  # fmt: skip
        samples: list[dict[str, object]] = []
        if status == "skipped":
            row["reason"] = "torch: device 'cuda' not available (have ['cpu'])"
        elif status == "error":
            row.update(reason=f"RuntimeError: kernel {XSS_IMG} failed", details=f"Traceback (most recent call last):\n  {XSS}\nRuntimeError: boom")
        elif status == "mismatch":
            row.update(verify_error=0.01, verify_tolerance=1e-4, verify_worst="dw", reason="relative error 0.01 in dw exceeds 0.0001")
        if status == "ok":
            row.update(verify_error=1e-7, verify_tolerance=1e-4, verify_worst="dw")
            scale = {"torch": 1.0, "reference": 6.0}[c.backend] * (2.5 if c.mode == "training" else 1.0)
            scale *= 1.6 if c.variant == "diagonalwise" else 1.0
            median = macs * 2e-9 * scale * slowdown
            values = median * (1 + 0.02 * rng.standard_normal(12))
            row.update(
                timer="host_wall_sync", median=float(np.median(values)), q1=float(np.quantile(values, 0.25)),
                q3=float(np.quantile(values, 0.75)), ci_low=float(np.sort(values)[2]), ci_high=float(np.sort(values)[9]),
                mean=float(values.mean()), stdev=float(values.std(ddof=1)), min=float(values.min()), max=float(values.max()),
                n=12, inner=4, converged=c.workload != "dw_c", warmup_iters=3, timing_seconds=0.1,
            )  # fmt: skip
            row["iqr"] = row["q3"] - row["q1"]
            row.update(throughput=1 / row["median"], gflops=row["flops"] / row["median"] / 1e9, gbps=row["bytes"] / row["median"] / 1e9)
            if c.backend == "torch" and "roofline_fraction" in row:
                bound = max(row["flops"] / 50e9, row["bytes"] / 10e9)
                row.update(roofline_bound=bound, roofline_limit="memory", roofline_fraction=bound / row["median"])
            group = c.group_key
            ratios: list[float | None] = [None] * 12
            if c.variant == "native":
                base_times[group] = row["median"]
            else:
                ratios = list(1.6 * (1 + 0.03 * rng.standard_normal(12)))
                srt = sorted(ratios)
                row.update(baseline="native", ratio=float(np.median(ratios)), ratio_ci_low=srt[2], ratio_ci_high=srt[9], rounds=12)
            samples = [{"case_id": c.case_id, "index": i, "seconds": float(v), "ratio": ratios[i]} for i, v in enumerate(values)]
            if contention:
                row.update(telemetry(c))
        folder.add(row, samples)
    folder.finish("complete")
    folder.meta["finished"] = "2026-01-01T00:10:00+00:00"
    folder.save_meta()
    return path


#: The reason recorded for the contended cases (and canary point) of ``contention`` runs.
CONTENTION = f"4 of 15 samples used were contended (0 dropped): other processes used 0.82 cores {XSS_IMG}"


def telemetry(case: Case) -> dict[str, object]:
    """Contention telemetry of a timed case: the torch cases of ``dw_a`` contended (0.82
    cores of other processes), the rest quiet (0.05); CPU cases at 2 threads use every
    usable core of the synthetic machine (``threads_all_cores``)."""
    contended = case.workload == "dw_a" and case.backend == "torch"
    return {
        "contended": contended, "contention": CONTENTION if contended else None,
        "foreign_cpu": 0.82 if contended else 0.05, "steal": 0.0, "cpu_pressure": 0.5 if contended else 0.01,
        "dropped": 2 if contended else 0, "quiet_wait": 0.0, "threads_all_cores": case.device == "cpu" and case.threads == 2,
        "speed_compute": 1.31 if contended else 1.01, "speed_memory": 1.02,
    }  # fmt: skip


def read_json_specs(page: str) -> list[dict]:
    """The plot specs embedded in a rendered page, parsed."""
    import re

    return [json.loads(m) for m in re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', page, re.S)]
