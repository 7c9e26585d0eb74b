"""The executorch backend against the float64 NumPy reference.

Run with the ExecuTorch environment's interpreter (``make test`` does:
``.venv-executorch/bin/python -m pytest tests/backends/executorch``); it imports torch and
executorch, and frameworks are never imported together in one process.
"""

from __future__ import annotations

import pytest

pytest.importorskip("executorch.runtime")

from convbench_executorch import ExecutorchBackend  # noqa: E402
from convbench_executorch.backend import BFLOAT16_REASON, TRAINING_REASON  # noqa: E402

from convbench.backend import UnsupportedCase  # noqa: E402
from convbench.variants import parse_variant  # noqa: E402
from convbench.workloads import build_graph  # noqa: E402
from tests.backends.graphs import (  # noqa: E402
    LAYOUTS,
    SPINE_OPS,
    assert_half_matches,
    assert_matches,
    make_case,
    prepare,
    single_op_graph,
    standard_graphs,
    tiny_depthwise,
)

BACKEND = ExecutorchBackend()
EXECUTIONS = ["xnnpack", "portable"]
GRAPHS = standard_graphs()


def test_info_reports_version_devices_and_delegates() -> None:
    info = BACKEND.info()
    assert info.available and info.devices == ["cpu"] and info.version
    assert "XnnpackBackend" in info.environment["delegates"]


@pytest.mark.parametrize("op", SPINE_OPS)
def test_single_op(op: str) -> None:
    assert_matches(BACKEND, single_op_graph(op), execution="xnnpack").close()


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graphs(name: str, execution: str) -> None:
    for layout in LAYOUTS:
        prepared = assert_matches(BACKEND, GRAPHS[name], layout=layout, execution=execution)
        details = prepared.details()
        assert details["layout_used"] == "nchw" and ("layout_note" in details) == (layout == "nhwc")
        assert details["pte_bytes"] > 0
        prepared.close()


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("variant", ["native", "diagonalwise(group_size=4)"])
def test_depthwise_variants(variant: str, execution: str) -> None:
    graph = parse_variant(variant).apply(tiny_depthwise())
    assert_matches(BACKEND, graph, execution=execution, variant=variant).close()


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_small_network(execution: str) -> None:
    graph = build_graph("mobilenet_v1", {"width": 0.25, "resolution": 32, "classes": 10}, 1)
    assert_matches(BACKEND, graph, execution=execution).close()


def test_threads_reach_the_xnnpack_threadpool() -> None:
    BACKEND.set_threads(1)
    try:
        prepared = assert_matches(BACKEND, tiny_depthwise(), execution="xnnpack")
        assert prepared.details()["num_threads"] == 1
        prepared.close()
    finally:
        BACKEND.set_threads(None)


def _busy_threads(prepared, runs: int = 300) -> int:
    """How many of this process's threads gained CPU time over ``runs`` executes."""
    import os

    def ticks() -> dict[str, int]:
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[tid] = int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return out

    before = ticks()
    for _ in range(runs):
        prepared.step()
    after = ticks()
    return sum(1 for tid, t in after.items() if t > before.get(tid, 0))


def test_threadpool_resize_keeps_live_programs_valid() -> None:
    """A 2-thread case then a 1-thread case in one process (as a worker's group holds them):
    both execute many times (the reset used to leave the first delegate a destroyed pool,
    and a reset after load aborted the timed 1-thread execute), and one thread really runs."""
    graph = build_graph("mobilenet_v1", {"width": 0.25, "resolution": 32, "classes": 10}, 1)
    BACKEND.set_threads(2)
    try:
        two = assert_matches(BACKEND, graph, execution="xnnpack")
        BACKEND.set_threads(1)
        one = assert_matches(BACKEND, graph, execution="xnnpack")
        assert one.details()["num_threads"] == 1
        assert _busy_threads(one) == 1
        for _ in range(300):
            two.step()
        one.close()
        two.close()
    finally:
        BACKEND.set_threads(None)


def test_float16() -> None:
    assert_half_matches(BACKEND, "float16", execution="xnnpack").close()


def test_training_and_bfloat16_are_skipped_with_the_reason() -> None:
    assert BACKEND.skip_reason(make_case(backend="executorch", execution="xnnpack", mode="training")) == TRAINING_REASON
    assert BACKEND.skip_reason(make_case(backend="executorch", execution="xnnpack", dtype="bfloat16")) == BFLOAT16_REASON
    with pytest.raises(UnsupportedCase, match="inference only"):
        prepare(BACKEND, GRAPHS["all_ops"], mode="training", execution="xnnpack")
