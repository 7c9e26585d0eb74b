"""The onnxruntime backend and ``convbench export`` against the float64 reference.

Run on its own (``pytest tests/backends/onnxruntime``): it imports onnxruntime, and
frameworks are never imported together in one process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from convbench_onnxruntime import OnnxruntimeBackend  # noqa: E402
from convbench_onnxruntime.backend import BFLOAT16_REASON, TRAINING_REASON  # noqa: E402
from convbench_onnxruntime.onnx_graph import OPS, build_model  # noqa: E402

from convbench.backend import UnsupportedCase  # noqa: E402
from convbench.cases import Case  # noqa: E402
from convbench.data import make_tensors  # noqa: E402
from convbench.reference import run_reference  # noqa: E402
from convbench.suite import load_suite  # noqa: E402
from convbench.variants import parse_variant  # noqa: E402
from convbench.workloads import build_graph  # noqa: E402
from tests.backends.graphs import (  # noqa: E402
    LAYOUTS,
    SPINE_OPS,
    assert_half_matches,
    assert_matches,
    make_case,
    prepare,
    scc_gather,
    single_op_graph,
    standard_graphs,
    unknown_ops,
)
from tests.conftest import ROOT, run_cli  # noqa: E402

BACKEND = OnnxruntimeBackend()
EXECUTIONS = ["disabled", "basic", "extended", "layout", "all"]  # graph optimization levels
GRAPHS = standard_graphs()


def test_info_reports_version_and_providers() -> None:
    info = BACKEND.info()
    assert info.available and info.version == ort.__version__
    assert "CPUExecutionProvider" in info.environment["providers"]
    assert ("cuda" in info.devices) == ("CUDAExecutionProvider" in ort.get_available_providers())


def test_every_ir_op_is_lowered() -> None:
    assert unknown_ops(set(OPS)) == []


@pytest.mark.parametrize("op", SPINE_OPS)
def test_single_op(op: str) -> None:
    for layout in LAYOUTS:
        assert_matches(BACKEND, single_op_graph(op), layout=layout)


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graphs(name: str, execution: str) -> None:
    for layout in LAYOUTS:
        prepared = assert_matches(BACKEND, GRAPHS[name], layout=layout, execution=execution)
        details = prepared.details()
        assert details["providers"][0] == "CPUExecutionProvider"
        assert ("layout_note" in details) == (layout == "nhwc")
        prepared.close()


def test_training_is_skipped_with_the_reason() -> None:
    assert BACKEND.skip_reason(make_case(backend="onnxruntime", mode="training")) == TRAINING_REASON
    with pytest.raises(UnsupportedCase, match="inference only"):
        prepare(BACKEND, GRAPHS["all_ops"], mode="training")


def test_models_pass_the_checker_in_both_layouts() -> None:
    graph = GRAPHS["movement"]
    for layout in LAYOUTS:
        model = build_model(graph, make_tensors(graph, 0), layout=layout)
        onnx.checker.check_model(model.proto, full_check=True)
        shape = [d.dim_value for d in model.proto.graph.input[0].type.tensor_type.shape.dim]
        assert shape == ([2, 6, 5, 5] if layout == "nchw" else [2, 5, 5, 6])


def _run_model(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.astype(np.float32) for k, v in feeds.items()})


def test_export_a_suite_workload_reproduces_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "dw2.onnx"
    proc = run_cli("export", "suites/depthwise.yaml:conv_dw_2", "--variant", "diagonalwise", "--batch", "2", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "passes onnx.checker" in proc.stdout
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    # the file holds the weights a run of that workload uses: it reproduces the reference
    spec = load_suite(ROOT / "suites/depthwise.yaml").workload("conv_dw_2")
    case = Case(suite="s", workload="conv_dw_2", kind=spec.kind, params=spec.params, batch=2)
    graph = build_graph(case.kind, case.params, 2)
    tensors = make_tensors(parse_variant("diagonalwise").apply(graph), case.data_seed)
    want = run_reference(graph, tensors, None, "inference")[graph.outputs[0]]
    (got,) = _run_model(out, {"x": tensors["x"]})
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5


def test_export_a_kind_with_params_in_nhwc(tmp_path: Path) -> None:
    out = tmp_path / "dw.onnx"
    proc = run_cli(
        "export", "depthwise", "--param", "channels=40", "--param", "size=9", "--param", "bn=true",
        "--variant", "diagonalwise(group_size=16)", "--layout", "nhwc", "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    model = onnx.load(str(out))
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 9, 9, 40]
    assert {n.op_type for n in model.graph.node} >= {"Conv", "Mul", "Slice", "Concat", "BatchNormalization", "Transpose"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuch"], "unknown workload 'nosuch'"),
        (["depthwise", "--param", "channels=x", "--param", "size=4"], "channels"),
        (["depthwise", "--param", "channels"], "expected KEY=VALUE"),
        (["suites/depthwise.yaml:zz"], "no workload 'zz'"),
        (["suites/depthwise.yaml:conv_dw_1", "--param", "size=3"], "--param applies to a KIND"),
        (["mobilenet_v1", "--variant", "bogus"], "unknown variant 'bogus'"),
        (["mobilenet_v1", "--batch", "0"], "--batch must be >= 1"),
        (["onnx", "depthwise"], "takes the workload directly"),
        (["pytest-benchmark", "results/run"], "convbench pytest-benchmark export"),
        (["depthwise", "pointwise"], "one WORKLOAD, got 2"),
    ],
)
def test_export_bad_input_is_one_message_and_exit_2(tmp_path: Path, args: list[str], message: str, capsys, monkeypatch) -> None:
    from convbench.cli import main

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["export", *args, "-o", str(tmp_path / "m.onnx")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_eager_and_compiled_are_the_disabled_and_all_levels() -> None:
    levels = {"disabled": "ORT_DISABLE_ALL", "eager": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "layout": "ORT_ENABLE_LAYOUT", "all": "ORT_ENABLE_ALL", "compiled": "ORT_ENABLE_ALL"}  # fmt: skip
    assert set(BACKEND.executions) == set(levels)
    for execution, level in levels.items():
        prepared, _ = prepare(BACKEND, GRAPHS["masked_conv"], execution=execution)
        assert prepared.details()["graph_optimization_level"] == level
        prepared.close()
    assert "no execution 'xla'" in BACKEND.skip_reason(make_case(backend="onnxruntime", execution="xla"))


@pytest.mark.parametrize("execution", ["disabled", "all"])
def test_float16_on_a_tiny_depthwise_workload_says_where_it_computes_in_float32(execution: str) -> None:
    for layout in LAYOUTS:
        prepared = assert_half_matches(BACKEND, "float16", execution=execution, layout=layout)
        note = prepared.details()["half_precision"]
        if ort.get_device() == "CPU" and "Conv" in note:  # x86: no float16 Conv kernel on the CPU provider
            assert "inserted" in note and "computes those in float32" in note
        prepared.close()


def test_bfloat16_is_skipped_with_the_reason() -> None:
    assert BACKEND.skip_reason(make_case(backend="onnxruntime", dtype="bfloat16")) == BFLOAT16_REASON
    with pytest.raises(UnsupportedCase, match="bfloat16"):
        prepare(BACKEND, GRAPHS["all_ops"], dtype="bfloat16")


def test_export_in_float16_passes_the_checker_and_reproduces_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "dw16.onnx"
    params = ["--param", "channels=16", "--param", "size=9", "--param", "bn=true", "--param", "act=relu6"]
    proc = run_cli("export", "depthwise", *params, "--variant", "diagonalwise(group_size=8)", "--dtype", "float16", "--batch", "2", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "float16" in proc.stdout and "passes onnx.checker" in proc.stdout
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    kind_params = {"channels": 16, "size": 9, "bn": True, "act": "relu6"}
    case = Case(suite="export", workload="depthwise", kind="depthwise", params=_normalised("depthwise", kind_params), batch=2)
    graph = build_graph(case.kind, case.params, 2)
    tensors = make_tensors(parse_variant("diagonalwise(group_size=8)").apply(graph), case.data_seed)
    want = run_reference(graph, tensors, None, "inference")[graph.outputs[0]]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": tensors["x"].astype(np.float16)})
    assert np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want) < 1e-2


def _normalised(kind: str, params: dict) -> dict:
    from convbench.workloads import WORKLOADS

    return WORKLOADS[kind].params_model.model_validate(params).model_dump(mode="json")


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_scc_gather_form_in_both_layouts(execution: str) -> None:
    """The SCC gather form: ONNX's Gather on the logical channel axis (the model computes
    NCHW in both layouts, NHWC data converted at the boundary)."""
    for layout in LAYOUTS:
        assert_matches(BACKEND, scc_gather(bn=True, act="relu"), layout=layout, execution=execution).close()
