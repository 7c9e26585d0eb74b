"""The mxnet backend against the float64 NumPy reference.

Run on its own, with the MXNet environment's interpreter
(``.venv-mxnet/bin/python -m pytest tests/backends/mxnet``): MXNet 1.9.1 needs NumPy
< 1.24, and frameworks are never imported together in one process.
"""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from convbench_mxnet import MxnetBackend  # noqa: E402
from convbench_mxnet.lower import OPS  # noqa: E402

from tests.backends.graphs import (  # noqa: E402
    LAYOUTS,
    MODES,
    SPINE_OPS,
    assert_matches,
    assert_restores_and_updates,
    make_case,
    scc_gather,
    single_op_graph,
    standard_graphs,
    unknown_ops,
)

BACKEND = MxnetBackend()
EXECUTIONS = ["eager", "hybridized"]  # hybridized: hybridize() (= compiled)
GRAPHS = standard_graphs()


def test_info_reports_version_numpy_and_devices() -> None:
    info = BACKEND.info()
    assert info.available and info.version == mx.__version__ == "1.9.1"
    assert info.devices[0] == "cpu"
    assert info.environment["numpy"].startswith("1.23")


def test_every_ir_op_is_lowered() -> None:
    assert unknown_ops(set(OPS)) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", SPINE_OPS)
def test_single_op(op: str, mode: str) -> None:
    for layout in LAYOUTS:
        assert_matches(BACKEND, single_op_graph(op), mode=mode, layout=layout)


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_prelu_before_a_channel_shuffle_trains(execution: str) -> None:
    """A PReLU whose output is reshaped and transposed (DiCE's shuffle): hybridized,
    MXNet's LeakyReLU backward gives a wrong gamma gradient there (0.75 relative), so
    training writes the PReLU out."""
    from convbench.graph import GraphBuilder

    b = GraphBuilder()
    y = b.prelu(b.conv2d(b.input("x", (2, 4, 5, 5)), 6, 3, name="c"), name="p")
    y = b.reshape(b.transpose(b.reshape(y, (2, 3, 2, 5, 5)), (0, 2, 1, 3, 4)), (2, 6, 5, 5))
    graph = b.build([b.conv2d(y, 6, 1, groups=6, name="d")])
    for mode in MODES:
        assert_matches(BACKEND, graph, mode=mode, execution=execution)


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graphs(name: str, mode: str, execution: str) -> None:
    for layout in LAYOUTS:
        prepared = assert_matches(BACKEND, GRAPHS[name], mode=mode, layout=layout, execution=execution)
        details = prepared.details()
        assert details["layout_used"] == "nchw"  # MXNet's CPU convolution has no NHWC kernel
        assert ("layout_note" in details) == (layout == "nhwc")
        prepared.close()


def _weights(prepared) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {name: prepared.params[name].data().asnumpy().astype(np.float64) for name in prepared.param_names}


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_training_restores_and_updates(execution: str) -> None:
    assert_restores_and_updates(BACKEND, _weights, execution=execution)


def test_threads_and_unsupported_cases() -> None:
    BACKEND.set_threads(1)
    from convbench_mxnet.threads import current_threads

    assert current_threads() == 1
    assert "no execution 'graph'" in BACKEND.skip_reason(make_case(backend="mxnet", execution="graph"))
    assert BACKEND.skip_reason(make_case(backend="mxnet", execution="compiled")) is None


def test_half_precision_is_skipped_with_the_reason_on_cpu() -> None:
    from convbench_mxnet.backend import BFLOAT16_REASON, FLOAT16_CPU_REASON

    assert BACKEND.skip_reason(make_case(backend="mxnet", dtype="float16")) == FLOAT16_CPU_REASON
    assert BACKEND.skip_reason(make_case(backend="mxnet", dtype="bfloat16")) == BFLOAT16_REASON
    # the reason is MXNet's own: its CPU convolution refuses float16
    x = mx.nd.ones((1, 4, 6, 6), dtype="float16")
    w = mx.nd.ones((4, 1, 3, 3), dtype="float16")
    with pytest.raises(mx.base.MXNetError, match="FP16 gemm on cpu not implemented"):
        mx.nd.Convolution(x, w, kernel=(3, 3), pad=(1, 1), num_filter=4, num_group=4, no_bias=True).wait_to_read()


def test_hybridized_is_compiled() -> None:
    assert dict(BACKEND.executions) == {"eager": "eager", "hybridized": "hybridized", "compiled": "hybridized"}
    graph = GRAPHS["masked_conv"]
    for execution in ("hybridized", "compiled"):
        prepared = assert_matches(BACKEND, graph, execution=execution)
        assert prepared.details()["execution"].startswith("hybridize(")
        prepared.close()


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_scc_gather_form_in_both_layouts(mode: str, execution: str) -> None:
    """The SCC gather form: ``take`` on the logical channel axis (MXNet computes NCHW in
    both layouts, NHWC data converted at the boundary)."""
    for layout in LAYOUTS:
        assert_matches(BACKEND, scc_gather(bn=True, act="relu"), mode=mode, layout=layout, execution=execution).close()
