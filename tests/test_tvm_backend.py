"""The tvm backend: convbench's ONNX lowering imported by TVM's Relax frontend, Relax VM.

Neither tvm nor onnx is imported into this (the core tests') process: the cases run
through ``convbench run``, in the backend's own worker process, which verifies each one
against the float64 reference before timing it. Skipped when apache-tvm is not installed
(``pip install 'convbench[tvm]'``).

``tuned`` (MetaSchedule) is run with a budget of 2 trials. apache-tvm 0.27.0.post1 with
apache-tvm-ffi 0.1.15.post2 segfaults serializing TVM IR, which MetaSchedule's default
search, builder and database all do (convbench pins 0.1.14.post0); :mod:`convbench_tvm.tune`
assembles a tuner that does not, so the row must be ok, verified, and record its budget, its
trials and what it left out.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib.util import find_spec
from pathlib import Path

import pytest

from convbench.results import read_table
from tests.conftest import run_cli

MISSING = [m for m in ("tvm", "onnx") if find_spec(m) is None]
needs_tvm = pytest.mark.skipif(bool(MISSING), reason=f"{', '.join(MISSING)} not installed: pip install 'convbench[tvm]'")

SUITE = """
name: tvm-test
workloads:
  - {id: dw, kind: depthwise, params: {channels: 8, size: 12, kernel: 3, stride: 2}}
  - {id: sep, kind: separable, params: {in_channels: 8, out_channels: 16, size: 12, stride: 1}}
  - {id: mbv1, kind: mobilenet_v1, params: {width: 0.25, resolution: 32, classes: 10}}
matrix:
  - variant: [native]
    backend: [tvm]
    device: [cpu]
    mode: [inference, training]
    batch: [2]
    execution: [default]
  - workload: [dw]
    variant: [diagonalwise]
    backend: [tvm]
    device: [cpu]
    mode: [inference]
    batch: [2]
    execution: [default]
  - workload: [dw, sep]
    variant: [native]
    backend: [tvm]
    device: [cpu]
    mode: [inference]
    batch: [2]
    dtype: [float16, bfloat16]
    layout: [nhwc]
    execution: [default]
  - workload: [dw]
    variant: [native]
    backend: [tvm]
    device: [cpu]
    mode: [inference]
    batch: [2]
    execution: [tuned]
timing: {warmup_time: 0.01, min_samples: 3, precision: 0.5, max_time: 0.1}
"""


@pytest.fixture(scope="module")
def run_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, dict]:
    tmp = tmp_path_factory.mktemp("tvm")
    suite = tmp / "tvm.yaml"
    suite.write_text(SUITE)
    proc = run_cli("run", str(suite), "--out", str(tmp / "run"), CONVBENCH_TVM_TRIALS="2")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    frame = read_table(Path(tmp / "run"))
    assert frame is not None
    rows = {}
    for row in frame.to_dict("records"):
        text = row["details"] if isinstance(row["details"], str) else ""
        row["details"] = json.loads(text) if text.startswith("{") else {"text": text}  # an error row: its traceback
        rows[(row["workload"], row["variant"], row["mode"], row["dtype"], row["execution"])] = row
    return rows


@needs_tvm
@pytest.mark.parametrize(("workload", "variant"), [("dw", "native"), ("dw", "diagonalwise"), ("sep", "native"), ("mbv1", "native")])
def test_inference_is_verified(run_rows: dict, workload: str, variant: str) -> None:
    row = run_rows[(workload, variant, "inference", "float32", "default")]
    assert row["status"] == "ok", row["reason"]
    assert row["verify_error"] < 1e-5
    assert row["median"] > 0
    details = row["details"]
    assert details["execution_used"] == "default" and details["tuning"].startswith("none")
    assert '"kind": "llvm"' in details["target"] or "llvm" in details["target"]
    # the case's threads (every core here), read back from TVM's pool: TVM alone would size
    # it at half the hardware threads on x86 and run a 2-thread case on one
    assert details["num_threads_used"] == row["threads"]


@needs_tvm
def test_float16(run_rows: dict) -> None:
    row = run_rows[("dw", "native", "inference", "float16", "default")]  # no BatchNormalization
    assert row["status"] == "ok", row["reason"]
    assert 0 < row["verify_error"] < row["verify_tolerance"]
    assert "float16" in row["details"]["half_precision"]
    row = run_rows[("sep", "native", "inference", "float16", "default")]  # BatchNormalization: refused
    assert row["status"] in ("ok", "skipped"), row["reason"]
    if row["status"] == "skipped":
        assert "float16" in row["reason"] and "BatchNormalization" in row["reason"]


@needs_tvm
def test_training_and_bfloat16_are_skipped_with_the_reason(run_rows: dict) -> None:
    for workload in ("dw", "sep", "mbv1"):
        row = run_rows[(workload, "native", "training", "float32", "default")]
        assert row["status"] == "skipped" and "inference graphs only" in row["reason"]
    row = run_rows[("dw", "native", "inference", "bfloat16", "default")]
    assert row["status"] == "skipped" and "bfloat16" in row["reason"]


def has_compiler() -> bool:
    """Whether TVM will find a C/C++ compiler (its tvm.support.cc.get_cc, without importing tvm)."""
    names = ("g++", "gcc", "clang++", "clang", "c++", "cc")
    return bool(os.environ.get("CXX") or os.environ.get("CC") or any(shutil.which(n) for n in names))


@needs_tvm
def test_tuned_is_tuned_and_verified(run_rows: dict) -> None:
    row = run_rows[("dw", "native", "inference", "float32", "tuned")]
    if not has_compiler():  # tuned links shared libraries: a skipped row naming the install
        assert row["status"] == "skipped" and "apt-get install g++" in row["reason"], row["reason"]
        return
    assert row["status"] == "ok", row["reason"]
    assert row["verify_error"] < 1e-5
    tuning = row["details"]["tuning"]
    assert tuning["max_trials_global"] == 2
    assert 1 <= tuning["records"] <= 2 and tuning["tasks"] >= 1
    assert tuning["prim_funcs_tuned"] >= 1  # the database was applied to the compiled module
    assert "MutateParallel" in tuning["left_out"] and "ToJSONGraph" in tuning["left_out"]
