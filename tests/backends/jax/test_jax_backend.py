"""The jax backend against the float64 NumPy reference.

Run on its own (``pytest tests/backends/jax``): it imports jax, and frameworks are never
imported together in one process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from convbench_jax import JaxBackend  # noqa: E402
from convbench_jax.lower import OPS  # noqa: E402
from convbench_lowering.layout import NHWC, to_logical  # noqa: E402

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
from tests.conftest import ROOT  # noqa: E402

BACKEND = JaxBackend()
EXECUTIONS = ["eager", "jit"]  # jit: jax.jit (= compiled)
GRAPHS = standard_graphs()


def test_info_reports_version_and_devices() -> None:
    info = BACKEND.info()
    assert info.available and info.version == jax.__version__
    assert info.devices[0] == "cpu"
    assert info.environment["jaxlib"]


def test_every_ir_op_is_lowered() -> None:
    assert unknown_ops(set(OPS)) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", SPINE_OPS)
def test_single_op(op: str, mode: str) -> None:
    for layout in LAYOUTS:
        assert_matches(BACKEND, single_op_graph(op), mode=mode, layout=layout, execution="compiled")


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graphs(name: str, mode: str, execution: str) -> None:
    # op by op is slow (every primitive compiled per shape): one layout there, the NHWC
    # one with the most conversions; jit covers both
    for layout in LAYOUTS if execution == "jit" else ["nhwc"]:
        prepared = assert_matches(BACKEND, GRAPHS[name], mode=mode, layout=layout, execution=execution)
        assert prepared.details()["layout_used"] == layout
        prepared.close()


def _weights(prepared) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {name: to_logical(np.asarray(v, dtype=np.float64), prepared.plan.perms[name]) for name, v in prepared.params.items()}


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_training_restores_and_updates(execution: str) -> None:
    assert_restores_and_updates(BACKEND, _weights, execution=execution, layout="nhwc")


def test_unsupported_cases_are_skipped_with_reasons() -> None:
    for dtype in HALF_DTYPES:
        assert BACKEND.skip_reason(make_case(backend="jax", dtype=dtype)) is None
    assert "no execution 'graph'" in BACKEND.skip_reason(make_case(backend="jax", execution="graph"))
    other = (os.cpu_count() or 1) + 1
    assert "can be 1 or" in BACKEND.skip_reason(make_case(backend="jax", threads=other))
    # this process's runtime started with the default (every core): 1 thread needs its own
    BACKEND.set_threads(None)
    BACKEND._start_runtime()
    if (os.cpu_count() or 1) > 1:
        assert "fixed at start" in BACKEND.skip_reason(make_case(backend="jax", threads=1))
    assert BACKEND.skip_reason(make_case(backend="jax", threads=os.cpu_count())) is None


def test_one_thread_starts_the_runtime_single_threaded() -> None:
    code = (
        "import os\n"
        "from convbench_jax import JaxBackend\n"
        "from tests.backends.graphs import assert_matches, single_op_graph\n"
        "b = JaxBackend()\n"
        "b.set_threads(1)\n"
        "p = assert_matches(b, single_op_graph('conv2d'), threads=1)\n"
        "d = p.details()\n"
        "assert d['cpu_threads'] == 1, d\n"
        "assert (os.cpu_count() == 1) or 'xla_cpu_multi_thread_eigen=false' in d['xla_flags'], d\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=ROOT)


def test_compiled_is_jit() -> None:
    assert dict(BACKEND.executions) == {"eager": "eager", "jit": "jit", "compiled": "jit"}
    for execution, form in {"eager": "op by op (no jit)", "jit": "jax.jit of the whole step", "compiled": "jax.jit of the whole step"}.items():
        prepared, _ = prepare(BACKEND, GRAPHS["masked_conv"], execution=execution)
        assert prepared.details()["execution"] == form
        prepared.close()


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision_on_a_tiny_depthwise_workload(dtype: str, mode: str, execution: str) -> None:
    prepared = assert_half_matches(BACKEND, dtype, mode=mode, execution=execution, layout="nhwc")
    assert {str(v.dtype) for v in prepared.params.values()} == {dtype}
    assert "float32" in prepared.details()["batchnorm"]
    assert "converts half-precision convolutions" in prepared.details()["half_precision"]  # XLA on CPU
    if mode == "training":  # the state keeps its dtype across steps (running statistics included)
        prepared.step()
        prepared.sync()
        assert {str(v.dtype) for v in [*prepared.params.values(), *prepared.stats.values()]} == {dtype}
    prepared.close()


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_scc_gather_form_gathers_the_physical_channel_axis(mode: str, execution: str) -> None:
    """The SCC gather form in both layouts: in NHWC the gather stays NHWC (no transpose
    planned around it) and takes its indices along the last axis."""
    graph = scc_gather(bn=True, act="relu")
    (gather,) = graph.of_op("gather")
    for layout in LAYOUTS:
        prepared = assert_matches(BACKEND, graph, mode=mode, layout=layout, execution=execution)
        want = NHWC if layout == "nhwc" else None
        assert prepared.plan.perms[gather.name] == want and prepared.plan.input_perms(graph, gather) == [want]
        prepared.close()
