"""Framework-free graphs and checks shared by the plugin backends' own tests.

Every backend test module imports its framework and this module, never another
framework. The graphs are tiny; together they use every op of the IR.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convbench.backend import Backend, Prepared
from convbench.cases import Case
from convbench.data import make_cotangents, make_tensors
from convbench.graph import OPS, SOURCE_OPS, Graph, GraphBuilder
from convbench.reference import run_reference

FP32_TOL = 1e-4
MODES = ["inference", "training"]
LAYOUTS = ["nchw", "nhwc"]


def make_case(**fields: Any) -> Case:
    base: dict[str, Any] = {"suite": "test", "workload": "w", "kind": "test", "params": {}}
    base.update(fields)
    execution = base.pop("execution", "eager")
    case = Case(**base)
    # unchecked, so a test can ask a backend about a name outside the vocabulary
    return case.model_copy(update={"execution": execution})


def prepare(backend: Backend, graph: Graph, seed: int = 0, **fields: Any) -> tuple[Prepared, dict[str, np.ndarray]]:
    """The prepared case and the reference's answer for it."""
    case = make_case(**fields)
    tensors = make_tensors(graph, seed)
    cotangents = make_cotangents(graph, seed)
    prepared = backend.prepare(case, graph, tensors, cotangents)
    return prepared, run_reference(graph, tensors, cotangents, case.mode)


def errors(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> dict[str, float]:
    """Relative error ||a - b|| / ||b|| per key (absolute where b is all zeros)."""
    assert set(got) == set(want), (sorted(got), sorted(want))
    out = {}
    for key, b in want.items():
        a = got[key]
        assert a.shape == b.shape, (key, a.shape, b.shape)
        assert a.dtype == np.float64, key
        scale = np.linalg.norm(b)
        diff = np.linalg.norm(a - b)
        out[key] = float(diff / scale) if scale > 0 else float(diff)
    return out


def assert_matches(backend: Backend, graph: Graph, tol: float = FP32_TOL, **fields: Any) -> Prepared:
    prepared, want = prepare(backend, graph, **fields)
    errs = errors(prepared.check(), want)
    bad = {k: v for k, v in errs.items() if not v < tol}
    assert not bad, f"{fields}: relative errors above {tol}: {bad}"
    return prepared


#: Half types, each checked at its tolerance in convbench.cases.DEFAULT_TOLERANCE.
HALF_DTYPES = ["float16", "bfloat16"]


def tiny_depthwise(**params: Any) -> Graph:
    """A tiny depthwise workload as a suite builds it: 3x3 depthwise, batch norm, ReLU."""
    from convbench.workloads import build_graph

    return build_graph("depthwise", {"channels": 8, "size": 7, "kernel": 3, "bn": True, "act": "relu", **params}, 2)


def scc_gather(**params: Any) -> Graph:
    """A tiny SCC layer in its gather form (channel gather, grouped 1x1 conv), batch 2."""
    from convbench.workloads import build_graph

    base = {"in_channels": 8, "out_channels": 6, "size": 3, "groups": 2, "overlap": 0.5, "form": "gather"}
    return build_graph("scc", {**base, **params}, 2)


def assert_half_matches(backend: Backend, dtype: str, **fields: Any) -> Prepared:
    """The tiny depthwise workload in ``dtype`` against the reference, at that dtype's tolerance."""
    from convbench.cases import DEFAULT_TOLERANCE

    return assert_matches(backend, tiny_depthwise(), tol=DEFAULT_TOLERANCE[dtype], dtype=dtype, **fields)


def gb(shape: tuple[int, ...] = (2, 4, 6, 6)) -> tuple[GraphBuilder, str]:
    b = GraphBuilder()
    return b, b.input("x", shape)


def all_ops_graph(bn: bool = True) -> Graph:
    """One small graph that uses every op of the spine's IR, two outputs."""

    def norm(y: str) -> str:
        return b.batchnorm(y) if bn else y

    b, x = gb((2, 4, 8, 8))
    y = b.act(norm(b.conv2d(x, 8, 3, bias=not bn, name="stem")), "relu")
    y = b.conv2d(y, 16, 3, stride=2, groups=8, name="dw")  # depthwise, multiplier 2
    y = b.act(norm(y), "relu6")
    y = b.conv2d(y, 8, 1, groups=4, name="gpw")  # grouped pointwise
    lo = b.add("slice", [y], name="lo", axis=1, start=0, stop=4)
    hi = b.add("slice", [y], name="hi", axis=1, start=4, stop=8)
    gate = b.act(b.add("global_avgpool", [hi], name="gap_hi"), "sigmoid")
    lo = b.add("mul", [lo, gate], name="gated")  # (2,4,4,4) * (2,4,1,1) broadcast
    y = b.add("concat", [b.add("add", [lo, hi], name="sum"), hi], name="cat", axis=1)
    y = b.pool(y, "maxpool", 3, stride=2, padding=1)
    y = b.pool(y, "avgpool", 3, stride=1, padding=1)
    feat = b.add("flatten", [b.add("global_avgpool", [y], name="gap")], name="flat")
    logits = b.linear(feat, 5, name="fc")
    return b.build([logits, y])


def single_op_graph(op: str) -> Graph:
    """A graph around one op of the spine (a conv in front so it sees a trained activation)."""
    b, x = gb()
    y = b.conv2d(x, 4, 3, name="c")
    if op == "conv2d":
        y = b.conv2d(y, 6, 3, padding=0, bias=True, name="op")
    elif op == "batchnorm":
        y = b.batchnorm(y)
    elif op in ("relu", "relu6", "sigmoid"):
        y = b.add("mul", [y, b.const("k", (1,), value=[4.0])], name="scaled")  # reach 6
        y = b.act(y, op)
    elif op in ("add", "mul"):
        y = b.add(op, [y, b.conv2d(x, 4, 1, name="c2")], name="op")
    elif op == "concat":
        y = b.add("concat", [y, b.conv2d(x, 2, 1, name="c2")], name="op", axis=1)
    elif op == "slice":
        y = b.add("slice", [y], name="op", axis=3, start=1, stop=5)
    elif op in ("avgpool", "maxpool"):
        y = b.pool(y, op, 3, stride=2, padding=1)
    elif op == "global_avgpool":
        y = b.add("global_avgpool", [y], name="op")
    elif op == "flatten":
        y = b.add("flatten", [y], name="op")
    elif op == "linear":
        y = b.linear(b.add("flatten", [y], name="f"), 3, name="op")
    elif op == "upsample":
        y = b.upsample(y, (2, 3), name="op")  # unequal factors: H and W not swapped
    elif op == "prelu":
        y = b.prelu(y, name="op")  # its own slope per channel: a channel mix-up shows
    else:
        raise AssertionError(op)
    return b.build([y])


#: The ops :func:`single_op_graph` covers.
SPINE_OPS = [
    "conv2d", "batchnorm", "relu", "relu6", "sigmoid", "add", "mul", "concat", "slice",
    "avgpool", "maxpool", "global_avgpool", "flatten", "linear", "upsample", "prelu",
]  # fmt: skip


def masked_conv_graph() -> Graph:
    """A depthwise weight made diagonal by a const 0/1 mask: conv weight = mul(param, const)."""
    b, x = gb((2, 8, 6, 6))
    c, group = 8, 4
    w = b.param("dw.weight", (c, 1, 3, 3), "he_normal", fan_in=9)
    out = np.arange(c) % group
    mask = (out[:, None] == np.arange(group)[None, :]).astype(np.float64)[:, :, None, None]
    m = b.const("dw.mask", (c, group, 1, 1), value=mask)
    wd = b.add("mul", [w, m], name="dw.diag_weight")
    y = b.add("conv2d", [x, wd], name="dw", stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=c // group)
    return b.build([b.act(b.batchnorm(y), "relu")])


def pool_padding_graph() -> Graph:
    """Pools whose symmetric padding is not TensorFlow's SAME (stride 2 on an even size)."""
    b, x = gb((2, 3, 8, 8))
    y = b.conv2d(x, 4, 3, name="c")
    a = b.pool(y, "avgpool", 3, stride=2, padding=1)
    m = b.pool(y, "maxpool", 3, stride=2, padding=1)
    k = b.pool(y, "avgpool", 2, stride=2, padding=1)
    return b.build([a, m, k])


def movement_graph() -> Graph:
    """reshape, transpose, pad and shift: a channel shuffle, pads on C/H/W and a 3x3 shift."""
    from convbench.graph import shift_offsets

    b, x = gb((2, 6, 5, 5))
    y = b.conv2d(x, 6, 3, name="c")
    y = b.reshape(y, (2, 2, 3, 5, 5), name="split_groups")
    y = b.transpose(y, (0, 2, 1, 3, 4), name="swap")
    y = b.reshape(y, (2, 6, 5, 5), name="shuffled")
    y = b.pad(y, ((0, 0), (1, 2), (0, 1), (2, 0)), name="padded")  # (2, 9, 6, 7)
    y = b.shift(y, shift_offsets(9, 3), name="shifted")
    z = b.conv2d(y, 4, 1, name="pw")
    flat = b.reshape(z, (2, 4 * 6 * 7), name="flat")
    return b.build([z, b.linear(flat, 3, name="fc")])


def standard_graphs() -> dict[str, Graph]:
    """The multi-op graphs every backend's tests run in every mode, layout and execution."""
    return {
        "all_ops": all_ops_graph(),
        "all_ops_no_bn": all_ops_graph(bn=False),
        "masked_conv": masked_conv_graph(),
        "pool_padding": pool_padding_graph(),
        "movement": movement_graph(),
    }


def assert_restores_and_updates(backend: Backend, weights: Any, **fields: Any) -> None:
    """Training ``check()`` starts from the initial weights each time (so it is repeatable
    after timed steps), and its step applies SGD: new weight = old - 0.01 * grad."""
    graph = masked_conv_graph()
    tensors = make_tensors(graph, 0)
    prepared, want = prepare(backend, graph, mode="training", **fields)
    first = prepared.check()
    after = weights(prepared)
    for name in [n.name for n in graph.params]:
        np.testing.assert_allclose(after[name], tensors[name] - 0.01 * first[f"grad:{name}"], rtol=1e-5, atol=1e-6)
    for _ in range(3):
        prepared.step()
    prepared.sync()
    moved = weights(prepared)
    assert any(not np.allclose(moved[n], after[n]) for n in after), "timed steps did not update the weights"
    again = prepared.check()
    for key, value in first.items():
        np.testing.assert_allclose(again[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
    prepared.close()


def unknown_ops(table_ops: set[str]) -> list[str]:
    """Ops of the IR (``convbench.graph.OPS``) that a backend's op table lacks."""
    return sorted(set(OPS) - SOURCE_OPS - table_ops)
