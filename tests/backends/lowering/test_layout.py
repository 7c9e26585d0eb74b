"""The framework-free lowering kit: layout plans, conversions and the op-table program."""

from __future__ import annotations

import numpy as np
import pytest
from convbench_lowering.drive import compile_program
from convbench_lowering.layout import (
    HWIO,
    NHWC,
    Converter,
    inverse,
    physical_axis,
    physical_pads,
    plan_layouts,
    to_logical,
    to_physical,
)

from convbench.backend import UnsupportedCase
from convbench.graph import GraphBuilder
from convbench.variants import parse_variant
from tests.backends.graphs import all_ops_graph, movement_graph, scc_gather

NUMPY = Converter(lambda x, perm: np.transpose(x, perm), lambda x, shape: np.reshape(x, shape))


def test_nhwc_plan_keeps_weights_in_filter_order_without_transposes() -> None:
    b = GraphBuilder()
    x = b.input("x", (2, 40, 6, 6))
    y = b.conv2d(x, 40, 3, groups=40, name="dw")
    graph = parse_variant("diagonalwise(group_size=16)").apply(b.build([y]))
    plan = plan_layouts(graph, NHWC, HWIO)
    assert plan.perms["x"] == NHWC and plan.perms["dw"] == NHWC
    # the depthwise weight is sliced and masked into two diagonal weights, all held HWIO
    for node in graph.nodes:
        if node.op in ("param", "const") and len(node.shape) == 4 or node.name.startswith("dw.diag_weight"):
            assert plan.perms[node.name] == HWIO, node.name
    # the input is sliced along channels in NHWC: slice reads it as it is
    for node in graph.of_op("slice", "mul", "conv2d", "concat"):
        reads = plan.input_perms(graph, node)
        assert all(r == plan.perms[i] for r, i in zip(reads, node.inputs, strict=True) if len(graph.shape(i)) == 4), node.name


def test_a_plan_without_perms_is_all_logical() -> None:
    graph = all_ops_graph()
    plan = plan_layouts(graph)
    assert set(plan.perms.values()) == {None}


def test_conversions_between_perms_and_ranks() -> None:
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5).astype(float)
    nhwc = to_physical(x, NHWC)
    assert nhwc.shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(to_logical(nhwc, NHWC), x)
    np.testing.assert_array_equal(NUMPY.convert(nhwc, x.shape, NHWC, None), x)
    np.testing.assert_array_equal(NUMPY.convert(x, x.shape, None, HWIO), np.transpose(x, HWIO))
    np.testing.assert_array_equal(NUMPY.convert(np.transpose(x, HWIO), x.shape, HWIO, NHWC), nhwc)
    v = np.arange(3.0)  # (C,) broadcast against NHWC (N, C, H, W): becomes (1, 1, 1, C)
    assert NUMPY.convert(v.reshape(3, 1, 1), (3, 1, 1), None, NHWC, rank=4).shape == (1, 1, 1, 3)
    assert inverse(NHWC) == (0, 3, 1, 2)
    assert physical_axis(1, 4, NHWC) == 3 and physical_axis(-1, 4, None) == 3
    assert physical_pads(((0, 0), (1, 2), (3, 4), (5, 6)), NHWC) == [(0, 0), (3, 4), (5, 6), (1, 2)]


def test_program_runs_the_table_and_names_missing_ops() -> None:
    graph = movement_graph()
    calls: list[str] = []
    table = {op: (lambda ctx, site, ins, op=op: calls.append(op) or np.zeros(site.node.shape)) for op in {n.op for n in graph.ops}}
    plan = plan_layouts(graph)
    program = compile_program(graph, plan, table, NUMPY, "numpy")
    sources = {n.name: np.zeros(n.shape) for n in graph.nodes if n.op in ("input", "param", "const")}
    outs = program.run(None, sources)
    assert [o.shape for o in outs] == [graph.shape(o) for o in graph.outputs]
    assert calls == [n.op for n in graph.ops]
    del table["shift"], table["pad"]
    with pytest.raises(UnsupportedCase, match="pad, shift not lowered in this backend"):
        compile_program(graph, plan, table, NUMPY, "numpy")


def test_nhwc_plan_runs_the_scc_channel_gather_in_place() -> None:
    """The SCC gather form (gather along channels, grouped 1x1 conv) in NHWC: the gather
    reads and writes NHWC, so no transpose is planned around it, and its axis is last."""
    graph = scc_gather()
    plan = plan_layouts(graph, NHWC, HWIO)
    (gather,) = graph.of_op("gather")
    assert plan.perms[gather.name] == NHWC and plan.input_perms(graph, gather) == [NHWC]
    assert plan.perms[gather.inputs[0]] == NHWC
    assert physical_axis(gather.attrs["axis"], 4, plan.perms[gather.name]) == 3
    # every read of an activation in the graph is in the perm it is held in: no transposes
    for node in graph.ops:
        for name, want in zip(node.inputs, plan.input_perms(graph, node), strict=True):
            if len(graph.shape(name)) == 4 and graph[name].op not in ("param", "const"):
                assert want == plan.perms[name], (node.name, name)
