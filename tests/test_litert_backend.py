"""The litert backend: TFLite models from the tensorflow lowering, run by ai-edge-litert.

Neither ai_edge_litert nor tensorflow is imported into this (the core tests') process:
the cases run through ``convbench run``, in the backend's own worker process, which
verifies each one against the float64 reference before timing it. Skipped when
ai-edge-litert or TensorFlow is not installed (``pip install 'convbench[litert]'``).
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import pytest

from convbench.results import read_table
from tests.conftest import run_cli

MISSING = [m for m in ("ai_edge_litert", "tensorflow") if find_spec(m) is None]
needs_litert = pytest.mark.skipif(
    bool(MISSING), reason=f"{', '.join(MISSING)} not installed: pip install 'convbench[litert]'"
)

SUITE = """
name: litert-test
workloads:
  - {id: dw, kind: depthwise, params: {channels: 8, size: 12, kernel: 3, stride: 2}}
  - {id: sep, kind: separable, params: {in_channels: 8, out_channels: 16, size: 12, stride: 1}}
  - {id: mbv1, kind: mobilenet_v1, params: {width: 0.25, resolution: 32, classes: 10}}
matrix:
  - variant: [native]
    backend: [litert]
    device: [cpu]
    mode: [inference]
    batch: [2]
    execution: [xnnpack, reference]
  - variant: [native]
    backend: [litert]
    device: [cpu]
    mode: [training]
    batch: [2]
    execution: [xnnpack]
  - variant: [native, diagonalwise]
    backend: [litert]
    device: [cpu]
    mode: [inference]
    batch: [2]
    dtype: [float16, bfloat16]
    layout: [nhwc]
    execution: [xnnpack]
timing: {warmup_time: 0.01, min_samples: 3, precision: 0.5, max_time: 0.1}
"""


@pytest.fixture(scope="module")
def run_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, dict]:
    tmp = tmp_path_factory.mktemp("litert")
    suite = tmp / "litert.yaml"
    suite.write_text(SUITE)
    proc = run_cli("run", str(suite), "--out", str(tmp / "run"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    frame = read_table(Path(tmp / "run"))
    assert frame is not None
    rows = {}
    for row in frame.to_dict("records"):
        row["details"] = json.loads(row["details"]) if isinstance(row["details"], str) else {}
        rows[(row["workload"], row["variant"], row["mode"], row["dtype"], row["execution"])] = row
    return rows


@needs_litert
@pytest.mark.parametrize("execution", ["xnnpack", "reference"])
@pytest.mark.parametrize("workload", ["dw", "sep", "mbv1"])
def test_inference_is_verified_in_both_executions(run_rows: dict, workload: str, execution: str) -> None:
    row = run_rows[(workload, "native", "inference", "float32", execution)]
    assert row["status"] == "ok", row["reason"]
    assert row["verify_error"] < 1e-5
    assert row["median"] > 0
    details = row["details"]
    assert details["execution_used"] == execution and details["layout_used"] == "nhwc"
    assert details["op_resolver"] == {"xnnpack": "AUTO", "reference": "BUILTIN_REF"}[execution]
    if execution == "xnnpack":
        assert details["xnnpack_partitions"] >= 1  # the delegate took the model's ops
    else:
        assert "xnnpack_partitions" not in details


@needs_litert
@pytest.mark.parametrize("variant", ["native", "diagonalwise"])
def test_float16_weights(run_rows: dict, variant: str) -> None:
    row = run_rows[("dw", variant, "inference", "float16", "xnnpack")]
    assert row["status"] == "ok", row["reason"]
    assert 0 < row["verify_error"] < row["verify_tolerance"]
    assert "DEQUANTIZE" in row["details"]["model_ops"] and "float16" in row["details"]["half_precision"]


@needs_litert
def test_training_and_bfloat16_are_skipped_with_the_reason(run_rows: dict) -> None:
    for workload in ("dw", "sep", "mbv1"):
        row = run_rows[(workload, "native", "training", "float32", "xnnpack")]
        assert row["status"] == "skipped" and "inference only" in row["reason"]
    row = run_rows[("dw", "native", "inference", "bfloat16", "xnnpack")]
    assert row["status"] == "skipped" and "bfloat16" in row["reason"]
