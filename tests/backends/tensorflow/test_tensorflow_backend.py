"""The tensorflow backend against the float64 NumPy reference.

Run on its own (``pytest tests/backends/tensorflow``): it imports tensorflow, and
frameworks are never imported together in one process.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")

from convbench_lowering.layout import NHWC, to_logical  # noqa: E402
from convbench_tensorflow import TensorflowBackend  # noqa: E402
from convbench_tensorflow.lower import OPS  # noqa: E402

from convbench.backend import UnsupportedCase  # noqa: E402
from convbench.data import make_cotangents, make_tensors  # noqa: E402
from convbench.graph import Graph, GraphBuilder  # noqa: E402
from tests.backends.graphs import (  # noqa: E402
    HALF_DTYPES,
    LAYOUTS,
    MODES,
    SPINE_OPS,
    assert_half_matches,
    assert_matches,
    assert_restores_and_updates,
    make_case,
    prepare,
    scc_gather,
    single_op_graph,
    standard_graphs,
    unknown_ops,
)

BACKEND = TensorflowBackend()
EXECUTIONS = ["eager", "graph", "xla"]  # graph: tf.function alone; xla: with jit_compile (= compiled)
GRAPHS = standard_graphs()


def test_info_reports_version_and_devices() -> None:
    info = BACKEND.info()
    assert info.available and info.version == tf.__version__
    assert info.devices[0] == "cpu"
    assert ("cuda" in info.devices) == bool(tf.config.list_physical_devices("GPU"))
    assert "intra_op_threads" in info.environment


def test_every_ir_op_is_lowered() -> None:
    assert unknown_ops(set(OPS)) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", SPINE_OPS)
def test_single_op(op: str, mode: str) -> None:
    for layout in LAYOUTS:
        assert_matches(BACKEND, single_op_graph(op), mode=mode, layout=layout)


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graphs(name: str, mode: str, execution: str) -> None:
    for layout in LAYOUTS:
        prepared = assert_matches(BACKEND, GRAPHS[name], mode=mode, layout=layout, execution=execution)
        details = prepared.details()
        # CPU kernels outside XLA are NHWC only: NCHW data runs NHWC, and says so
        want = "nhwc" if execution != "xla" else layout
        assert details["layout_used"] == want
        assert ("layout_note" in details) == (want != layout)
        prepared.close()


def _weights(prepared) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {
        name: to_logical(v.numpy().astype(np.float64), prepared.plan.perms[name])
        for name, v in zip(prepared.param_names, prepared.params, strict=True)
    }


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_training_restores_and_updates(execution: str) -> None:
    assert_restores_and_updates(BACKEND, _weights, execution=execution, layout="nhwc")


def test_grouped_conv_training_on_cpu_runs_per_group() -> None:
    prepared, _ = prepare(BACKEND, GRAPHS["masked_conv"], mode="training")
    assert "one conv per group" in prepared.details()["grouped_conv"]
    prepared, _ = prepare(BACKEND, GRAPHS["masked_conv"], mode="training", execution="compiled")
    assert "grouped_conv" not in prepared.details()


def test_unsupported_cases_are_skipped_with_reasons() -> None:
    for dtype in HALF_DTYPES:
        assert BACKEND.skip_reason(make_case(backend="tensorflow", dtype=dtype)) is None
    # a name of the vocabulary that is another backend's, and one outside it
    assert "no execution 'jit'" in BACKEND.skip_reason(make_case(backend="tensorflow", execution="jit"))
    assert "no execution 'hybrid'" in BACKEND.skip_reason(make_case(backend="tensorflow", execution="hybrid"))
    graph = GRAPHS["all_ops"]
    BACKEND.set_threads(os.cpu_count())
    BACKEND.set_threads((os.cpu_count() or 1) + 1)  # the runtime has started: fixed
    with pytest.raises(UnsupportedCase, match="intra-op threads"):
        prepare(BACKEND, graph)
    BACKEND.set_threads(os.cpu_count())


def test_compiled_is_xla_and_every_name_maps_to_a_form() -> None:
    assert dict(BACKEND.executions) == {"eager": "eager", "graph": "graph", "xla": "xla", "compiled": "xla"}
    forms = {"eager": "eager", "graph": "tf.function", "xla": "tf.function(jit_compile=True)", "compiled": "tf.function(jit_compile=True)"}
    for execution, form in forms.items():
        prepared, _ = prepare(BACKEND, GRAPHS["masked_conv"], execution=execution, layout="nhwc")
        assert prepared.details()["execution_form"] == form
        prepared.close()


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision_on_a_tiny_depthwise_workload(dtype: str, mode: str, execution: str) -> None:
    for layout in LAYOUTS:
        prepared = assert_half_matches(BACKEND, dtype, mode=mode, execution=execution, layout=layout)
        assert prepared.details()["dtype"] == dtype
        assert {v.dtype.name for v in prepared.params} == {dtype}
        assert ("half_precision" in prepared.details()) == (execution == "xla")  # XLA's CPU backend upcasts convs
        prepared.close()


def test_a_run_records_the_execution_used_and_skips_another_backends_name(tmp_path) -> None:  # noqa: ANN001
    import json

    from tests.conftest import run_cli

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "workloads: [{id: dw, kind: depthwise, params: {channels: 8, size: 7}}]\n"
        "matrix: {backend: [tensorflow], execution: [eager, graph, compiled, xla, jit], dtype: [float16]}\n"
    )
    proc = run_cli("check", str(suite), "--json")
    rows = {r["execution"]: r for r in json.loads(proc.stdout)}
    used = {e: json.loads(r["details"])["execution_used"] if isinstance(r["details"], str) else r["details"]["execution_used"]
            for e, r in rows.items() if r["status"] == "ok"}  # fmt: skip
    assert used == {"eager": "eager", "graph": "graph", "compiled": "xla", "xla": "xla"}, rows
    assert rows["jit"]["status"] == "skipped"
    assert rows["jit"]["reason"].startswith("tensorflow: no execution 'jit' in this backend (it runs: eager, graph, xla, compiled (xla))")


def _dilated(groups: int, stride: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (2, 4, 9, 9))
    return b.build([b.conv2d(x, 4, 3, stride=stride, dilation=2, padding=2, groups=groups, name="conv")])


def test_dilated_convs_it_cannot_train_on_the_cpu_are_skipped_with_the_reason() -> None:
    """TensorFlow's CPU gradient of tf.nn.conv2d refuses dilation > 1 (outside XLA): a
    dense, grouped or strided depthwise dilated conv is a skip in training eager/graph;
    a stride-1 depthwise one (tf.nn.depthwise_conv2d) trains, and XLA trains them all."""
    from convbench_tensorflow.backend import dilated_training_reason
    from convbench_tensorflow.prepared import TensorflowPrepared

    dense, strided, depthwise = _dilated(1, 1), _dilated(4, 2), _dilated(4, 1)
    training = make_case(backend="tensorflow", mode="training")
    assert "Conv2DBackpropInput" in dilated_training_reason(training, dense)
    assert "conv" in dilated_training_reason(training, strided)
    assert dilated_training_reason(training, depthwise) is None
    assert dilated_training_reason(make_case(backend="tensorflow", mode="training", execution="xla"), dense) is None
    assert dilated_training_reason(make_case(backend="tensorflow", mode="inference"), dense) is None
    with pytest.raises(UnsupportedCase, match="dilated conv"):
        prepare(BACKEND, dense, mode="training")
    assert_matches(BACKEND, depthwise, mode="training")
    # the reason is TensorFlow's: built anyway, the dense one fails in its backward
    tensors, cotangents = make_tensors(dense, 0), make_cotangents(dense, 0)
    with pytest.raises(Exception, match="dilation rates larger than 1"):
        TensorflowPrepared(training, dense, tensors, cotangents, "eager", "float32").check()


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_scc_gather_form_gathers_the_physical_channel_axis(mode: str, execution: str) -> None:
    """The SCC gather form in both layouts: where it runs NHWC the gather stays NHWC (no
    transpose planned around it) and takes its indices along the last axis."""
    graph = scc_gather(bn=True, act="relu")
    (gather,) = graph.of_op("gather")
    for layout in LAYOUTS:
        prepared = assert_matches(BACKEND, graph, mode=mode, layout=layout, execution=execution)
        want = NHWC if prepared.details()["layout_used"] == "nhwc" else None
        assert prepared.plan.perms[gather.name] == want and prepared.plan.input_perms(graph, gather) == [want]
        prepared.close()
