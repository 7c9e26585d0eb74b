"""Device peaks, the work a case must do, and its roofline bound and fraction."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from convbench.graph import GraphBuilder
from convbench.peaks import PeakWork, case_work, measure_peaks, peak_key, peak_timing, roofline
from convbench.timing import TimingConfig
from tests.conftest import run_cli
from tests.fake_device import FAKE_BYTES_PER_S, FAKE_FLOPS_PER_S

EXTRA = "faulty=fake_backends:FaultyBackend,asyncfake=fake_device:AsyncBackend"


def small_graph():
    """x (1, 2, 4, 4) -> depthwise 3x3 (pad 1) -> relu: 2*16*9 = 288 MACs, 18 weights."""
    b = GraphBuilder()
    x = b.input("x", (1, 2, 4, 4))
    y = b.conv2d(x, 2, 3, groups=2, name="dw")
    return b.build([b.act(y, "relu")])


def test_case_work_counts_forward_and_training_by_hand() -> None:
    g = small_graph()
    assert g.macs() == 288 and g.param_count() == 18
    flops, nbytes = case_work(g, "inference", 4)
    assert flops == 2 * 288
    # conv reads x (32) and w (18), writes y (32); relu reads 32, writes 32
    assert nbytes == 4 * (32 + 18 + 32 + 32 + 32)
    flops_t, bytes_t = case_work(g, "training", 2)
    assert flops_t == 3 * 2 * 288
    backward = (32 + 2 * (32 + 18)) + (32 + 2 * 32)  # per op: out grad + inputs read + input grads
    assert bytes_t == 2 * (32 + 18 + 32 + 32 + 32) + 2 * (backward + 3 * 18)


def test_roofline_is_the_larger_of_the_compute_and_memory_times() -> None:
    peaks = {"flops_per_s": 1e12, "bytes_per_s": 1e11}
    assert roofline(2e9, 1e8, peaks) == pytest.approx((2e-3, "compute"))
    assert roofline(2e6, 1e9, peaks) == pytest.approx((1e-2, "memory"))
    assert roofline(1.0, 1.0, None) is None
    assert roofline(1.0, 1.0, {"error": "boom"}) is None


def test_measure_peaks_uses_the_best_sample_and_reports_the_median() -> None:
    times = iter([0.010, 0.012, 0.011] * 200)
    work = PeakWork(
        matmul=lambda n: n * next(times), matmul_flops=1e9,
        copy=lambda n: n * 0.004, copy_bytes=4e8, description={"matmul": "fake"},
    )  # fmt: skip
    peaks = measure_peaks(work, TimingConfig(warmup_iters=1, warmup_time=0, min_sample_time=1e-3, min_samples=6, max_time=0.5))
    assert peaks["flops_per_s"] == pytest.approx(1e9 / 0.010)
    assert peaks["flops_per_s_median"] <= peaks["flops_per_s"]
    assert peaks["bytes_per_s"] == pytest.approx(1e11) and peaks["matmul"] == "fake"


def test_peak_keys_and_timing() -> None:
    assert peak_key("float16", "cuda", None) == "float16"
    assert peak_key("float32", "cpu", 4) == "float32/threads=4"
    assert peak_timing(TimingConfig(max_time=0.05)).max_time == 0.2
    assert peak_timing(TimingConfig(max_time=30)).max_time == 1.0


def test_a_run_stores_peaks_once_per_dtype_and_each_case_its_roofline_fraction(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: peaks\n"
        "workloads:\n  - {id: dw, kind: depthwise, params: {channels: 4, size: 6}}\n"
        "  - {id: sep, kind: separable, params: {in_channels: 4, out_channels: 8, size: 6}}\n"
        "matrix: {backend: [asyncfake], variant: [native], mode: [inference, training], dtype: [float32, float16], threads: [1]}\n"
        "timing: {warmup_iters: 1, warmup_time: 0.0, min_sample_time: 0.001, min_samples: 3, precision: 0.5, max_time: 0.05, guard: flag}\n"
    )
    out = tmp_path / "run"
    proc = run_cli("run", str(path), "--out", str(out), CONVBENCH_EXTRA_BACKENDS=EXTRA, CONVBENCH_FAKE_WORK_MS="2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    peaks = json.loads((out / "run.json").read_text())["environment"]["backends"]["asyncfake:cpu"]["peaks"]
    assert set(peaks) == {"float32/threads=1", "float16/threads=1"}
    for p in peaks.values():
        assert p["flops_per_s"] == pytest.approx(FAKE_FLOPS_PER_S) and p["bytes_per_s"] == pytest.approx(FAKE_BYTES_PER_S)
    rows = pd.read_parquet(out / "cases.parquet")
    assert (rows.status == "ok").all(), rows[["case_id", "reason"]].to_string()
    from convbench.workloads import build_graph

    for _, r in rows.iterrows():
        flops, nbytes = case_work(build_graph(r["kind"], json.loads(r["params"]), int(r["batch"])), r["mode"], {"float32": 4, "float16": 2}[r["dtype"]])
        bound = max(flops / FAKE_FLOPS_PER_S, nbytes / FAKE_BYTES_PER_S)
        assert r["roofline_bound"] == pytest.approx(bound)
        assert r["roofline_limit"] == ("compute" if flops / FAKE_FLOPS_PER_S >= nbytes / FAKE_BYTES_PER_S else "memory")
        assert r["roofline_fraction"] == pytest.approx(bound / r["median"])
