"""torch.profiler rows of a case, tied to graph nodes: forward, backward and update.

Run in the torch tests' own process. TRITON_INTERPRET=1 is set before anything imports
triton, so the kernel variant can be profiled too (in Triton's interpreter).
"""

from __future__ import annotations

import os

import pytest

os.environ["TRITON_INTERPRET"] = "1"
torch = pytest.importorskip("torch")

from convbench_torch import TorchBackend  # noqa: E402
from convbench_torch.profiling import instrument  # noqa: E402

from convbench.cases import Case  # noqa: E402
from convbench.data import make_cotangents, make_tensors  # noqa: E402
from convbench.profile import categorize, shares  # noqa: E402
from convbench.variants import parse_variant  # noqa: E402
from convbench.workloads import build_graph  # noqa: E402

PARAMS = {"in_channels": 6, "out_channels": 8, "size": 6}


def profile_rows(variant: str, mode: str, steps: int = 2) -> tuple[list[dict], object]:
    native = build_graph("separable", PARAMS, 2)
    executed = parse_variant(variant).apply(native)
    case = Case(
        suite="t",
        workload="sep",
        kind="separable",
        params=PARAMS,
        variant=variant,
        mode=mode,
        batch=2,
    )
    prepared = TorchBackend().prepare(
        case, executed, make_tensors(executed, 0), make_cotangents(native, 0)
    )
    try:
        prepared.check()
        rows = prepared.profile(steps)
    finally:
        prepared.close()
    categorize(rows, native, executed)
    return rows, native


def test_training_profile_ties_forward_and_backward_ops_to_nodes() -> None:
    rows, native = profile_rows("native", "training")
    phases = {(r["node"], r["phase"]) for r in rows if r["node"] is not None}
    for node in ("dw", "pw", "dw.bn", "pw.bn"):
        assert (node, "forward") in phases and (node, "backward") in phases, node
    assert any(r["phase"] == "update" and r["op"].startswith("Optimizer.step") for r in rows)
    assert all(r["self_time"] >= 0 and r["count"] > 0 for r in rows)
    assert {r["source"] for r in rows} == {f"torch.profiler {torch.__version__}: self CPU time"}
    conv_ops = {r["op"] for r in rows if r["node"] == "dw" and r["phase"] == "forward"}
    assert "aten::convolution" in conv_ops  # the framework's op names, under the node
    cats = {r["category"] for r in rows}
    assert {"depthwise", "pointwise", "batchnorm", "activation", "other"} <= cats


def test_diagonalwise_and_kernel_variants_keep_the_depthwise_category() -> None:
    import pandas as pd

    for variant in ("diagonalwise(group_size=2)", "kernel"):
        if variant == "kernel":
            from convbench_torch.kernels import unavailable_reason

            if unavailable_reason("cpu"):
                pytest.skip(unavailable_reason("cpu"))
        rows, _ = profile_rows(variant, "training", steps=1)
        frame = pd.DataFrame([{**r, "case_id": "c", "status": "ok"} for r in rows])
        assert shares(frame).loc["c", "depthwise"] > 0
        backward = {r["op"] for r in rows if r["node"] == "dw" and r["phase"] == "backward"}
        assert backward, variant
        if variant == "kernel":
            assert any("DepthwiseConv2d" in op for op in backward)


def test_instrumented_module_shares_parameters_and_computes_the_same() -> None:
    native = build_graph("separable", PARAMS, 2)
    case = Case(suite="t", workload="sep", kind="separable", params=PARAMS, batch=2)
    prepared = TorchBackend().prepare(
        case, native, make_tensors(native, 0), make_cotangents(native, 0)
    )
    try:
        traced = instrument(prepared.module, native)
        assert {id(p) for p in traced.parameters()} == {id(p) for p in prepared.module.parameters()}
        with torch.inference_mode():
            a, b = prepared.module(*prepared.inputs), traced(*prepared.inputs)
        assert torch.equal(a[0], b[0])
        assert "_record_function_enter_new" in traced.code
    finally:
        prepared.close()
