"""Backend conformance: every backend, every op, every variant, both layouts, both modes.

Each backend runs in its own worker process (frameworks never share a process), through
`convbench check`, on a generated suite; every case must verify against the float64
reference: outputs, and in training the gradients of inputs and weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli

#: Small workloads that together use every op of the IR (and the rewrites of every variant).
WORKLOADS = [
    ("dw3", "depthwise", {"channels": 8, "size": 7, "kernel": 3, "stride": 1}),
    ("dw5_s2_bias", "depthwise", {"channels": 12, "size": 9, "kernel": 5, "stride": 2, "bias": True}),
    ("dw_mult2_odd", "depthwise", {"channels": 35, "size": 5, "multiplier": 2, "bn": True, "act": "relu6"}),
    ("pw_bn_relu", "pointwise", {"in_channels": 8, "out_channels": 12, "size": 5, "bn": True, "act": "relu"}),
    ("separable", "separable", {"in_channels": 40, "out_channels": 24, "size": 8, "stride": 2}),
    ("mobilenet_tiny", "mobilenet_v1", {"width": 0.25, "resolution": 32, "classes": 10}),
]
BACKENDS = ["reference", "torch"]
VARIANTS = ["native", "diagonalwise", "diagonalwise(group_size=16)"]


def conformance_suite(path: Path, backend: str) -> Path:
    suite = {
        "name": f"conformance-{backend}",
        "workloads": [{"id": i, "kind": k, "params": p} for i, k, p in WORKLOADS],
        "matrix": {
            "variant": VARIANTS,
            "backend": [backend],
            "device": ["cpu"],
            "mode": ["inference", "training"],
            "batch": [2],
            "layout": ["nchw", "nhwc"],
        },
    }
    path.write_text(json.dumps(suite))  # JSON is YAML
    return path


@pytest.fixture(scope="module", params=BACKENDS)
def checked(request, tmp_path_factory) -> tuple[str, pd.DataFrame]:
    backend = request.param
    suite = conformance_suite(tmp_path_factory.mktemp(backend) / "suite.yaml", backend)
    proc = run_cli("check", str(suite), "--json")
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return backend, pd.DataFrame(json.loads(proc.stdout))


def test_every_case_of_the_backend_verifies(checked: tuple[str, pd.DataFrame]) -> None:
    backend, rows = checked
    expected = len(WORKLOADS) * 2 * 2 * len(VARIANTS) - 2 * 2 * 2  # diagonalwise skips pointwise
    assert len(rows) == expected
    skipped = rows[rows.status == "skipped"]
    assert set(skipped.workload) == {"pw_bn_relu"} and (skipped.variant != "native").all()
    bad = rows[~rows.status.isin(["ok", "skipped"])]
    assert bad.empty, bad[["case_id", "status", "reason"]].to_string()
    ok = rows[rows.status == "ok"]
    assert (ok.verify_error <= 1e-4).all()
    # training checks gradients: the worst tensor of some case is a gradient
    assert ok[ok["mode"] == "training"].verify_worst.str.startswith("grad:").any()
