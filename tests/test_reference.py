"""Tests of the float64 NumPy reference executor and the ``reference`` backend.

Forward results are compared with independent computations (scipy.signal.correlate2d,
explicit loops, direct formulas); every op's backward is checked against central finite
differences in float64 on tiny shapes, for inputs and params, in both modes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy.signal import correlate2d
from scipy.special import expit

from convbench import reference
from convbench.backend import load_backend
from convbench.cases import Case
from convbench.data import make_cotangents, make_tensors
from convbench.graph import Graph, GraphBuilder
from convbench.reference import backward, forward, run_reference
from convbench.reference_backend import LEARNING_RATE, ReferenceBackend

MODES = ("inference", "training")
SEED = 7


# -- helpers ----------------------------------------------------------------------------------
def single(build: Callable[[GraphBuilder], str]) -> Graph:
    """A graph whose only output is what ``build`` returns."""
    b = GraphBuilder()
    return b.build([build(b)])


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """Norm-wise relative error, safe when both are zero."""
    scale = max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)
    return float(np.linalg.norm(a - b) / scale)


def loss_of(graph: Graph, tensors: dict, cts: dict, training: bool) -> float:
    values = forward(graph, tensors, training)
    return float(sum((values[o] * cts[o]).sum() for o in graph.outputs))


def fd_check(
    graph: Graph,
    mode: str,
    scale: dict[str, float] | None = None,
    h: float = 1e-6,
    tol: float = 1e-6,
) -> dict[str, np.ndarray]:
    """Compare backward() with central differences for every input and param node.

    ``scale`` multiplies chosen source tensors (e.g. to reach both kinks of relu6).
    Returns the analytic gradients.
    """
    training = mode == "training"
    tensors = make_tensors(graph, SEED)
    for name, s in (scale or {}).items():
        tensors[name] = tensors[name] * s
    cts = make_cotangents(graph, SEED)
    grads = backward(graph, forward(graph, tensors, training), cts, training)
    for node in graph.consts:
        assert node.name not in grads, f"const {node.name} got a gradient"
    for node in graph.inputs + graph.params:
        base = tensors[node.name]
        num = np.zeros(base.shape)
        for idx in np.ndindex(base.shape):
            arr = base.copy()
            probe = dict(tensors)
            probe[node.name] = arr
            arr[idx] = base[idx] + h
            plus = loss_of(graph, probe, cts, training)
            arr[idx] = base[idx] - h
            minus = loss_of(graph, probe, cts, training)
            num[idx] = (plus - minus) / (2 * h)
        assert grads[node.name].shape == base.shape
        assert np.linalg.norm(num) > 0, f"{node.name}: loss does not depend on it"
        err = rel_err(grads[node.name], num)
        assert err < tol, f"{mode}: d loss / d {node.name}: relative error {err:.3g}"
    return grads


# -- independent forward computations ------------------------------------------------------
def conv_naive(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> np.ndarray:
    """Per (n, o, c) scipy correlation with a zero-dilated kernel, then subsampling."""
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    wd = np.zeros((o, cg, (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1))
    wd[:, :, :: dilation[0], :: dilation[1]] = w
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    rows = []
    for i in range(n):
        chans = []
        for oc in range(o):
            g = oc // og
            acc = sum(correlate2d(xp[i, g * cg + k], wd[oc, k], mode="valid") for k in range(cg))
            acc = acc[:: stride[0], :: stride[1]]
            chans.append(acc + (b[oc] if b is not None else 0.0))
        rows.append(chans)
    return np.array(rows)


def pool_naive(
    x: np.ndarray, kind: str, kernel: tuple, stride: tuple, padding: tuple
) -> np.ndarray:
    """Explicit loops over the real (non-padding) elements of each window."""
    n, c, h, w = x.shape
    oh = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (w + 2 * padding[1] - kernel[1]) // stride[1] + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(n):
        for ch in range(c):
            for r in range(oh):
                for q in range(ow):
                    r0, q0 = r * stride[0] - padding[0], q * stride[1] - padding[1]
                    win = x[i, ch, max(r0, 0) : r0 + kernel[0], max(q0, 0) : q0 + kernel[1]]
                    out[i, ch, r, q] = win.mean() if kind == "avgpool" else win.max()
    return out


# -- conv2d forward -------------------------------------------------------------------------
CONV_CASES: list[dict[str, Any]] = [
    dict(x=(2, 3, 5, 6), out=4, kernel=3, groups=1, bias=True),
    dict(x=(2, 4, 6, 6), out=6, kernel=3, groups=2, stride=2, padding=1),
    dict(x=(2, 3, 5, 5), out=3, kernel=3, groups=3, bias=True),  # depthwise
    dict(x=(2, 3, 6, 7), out=6, kernel=3, groups=3, stride=2, padding=1),  # multiplier 2
    dict(x=(1, 2, 7, 7), out=3, kernel=3, groups=1, dilation=2, padding=2),
    dict(x=(2, 2, 7, 8), out=2, kernel=3, groups=2, dilation=2, padding=1, stride=2),
    dict(
        x=(1, 4, 6, 7),
        out=4,
        kernel=(1, 3),
        stride=(2, 1),
        padding=(0, 1),
        dilation=(1, 2),
        groups=2,
    ),
    dict(x=(2, 4, 6, 6), out=5, kernel=1, stride=2, padding=0, bias=True),  # last row unread
    dict(x=(1, 3, 8, 8), out=2, kernel=5, stride=3, padding=1),  # (8+2-5) % 3 != 0
]


def conv_graph(spec: dict[str, Any]) -> Graph:
    b = GraphBuilder()
    x = b.input("x", spec["x"])
    kw = {k: v for k, v in spec.items() if k not in ("x", "out", "kernel")}
    return b.build([b.conv2d(x, spec["out"], spec["kernel"], name="conv", **kw)])


def _as_pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("spec", CONV_CASES, ids=lambda s: str(s))
def test_conv2d_forward_matches_scipy(spec: dict[str, Any]) -> None:
    graph = conv_graph(spec)
    tensors = make_tensors(graph, SEED)
    a = graph["conv"].attrs
    want = conv_naive(
        tensors["x"],
        tensors["conv.weight"],
        tensors.get("conv.bias"),
        _as_pair(a["stride"]),
        _as_pair(a["padding"]),
        _as_pair(a["dilation"]),
        a["groups"],
    )
    got = forward(graph, tensors, training=False)["conv"]
    assert got.shape == graph["conv"].shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_depthwise_multiplier_reads_channel_o_div_m() -> None:
    """Output channel o of a depthwise conv with multiplier m reads input channel o // m."""
    b = GraphBuilder()
    x = b.input("x", (1, 2, 3, 3))
    graph = b.build([b.conv2d(x, 4, 1, groups=2, name="dw")])
    tensors = make_tensors(graph, SEED)
    tensors["dw.weight"] = np.ones((4, 1, 1, 1))
    y = forward(graph, tensors, False)["dw"]
    for o in range(4):
        np.testing.assert_array_equal(y[0, o], tensors["x"][0, o // 2])


# -- pools, batchnorm -----------------------------------------------------------------------
POOL_CASES = [
    ((3, 3), (2, 2), (1, 1)),
    ((2, 2), (2, 2), (0, 0)),
    ((3, 3), (1, 1), (1, 1)),
    ((3, 2), (2, 1), (1, 0)),
    ((3, 3), (2, 2), (0, 0)),  # 7x8 input: the last column is never read
]


@pytest.mark.parametrize("kind", ["avgpool", "maxpool"])
@pytest.mark.parametrize(("kernel", "stride", "padding"), POOL_CASES)
def test_pool_forward_matches_loops(
    kind: str, kernel: tuple, stride: tuple, padding: tuple
) -> None:
    b = GraphBuilder()
    x = b.input("x", (2, 3, 7, 8))
    graph = b.build([b.pool(x, kind, kernel, stride, padding)])
    tensors = make_tensors(graph, SEED)
    tensors["x"] = tensors["x"] - 10.0  # all negative: zero padding would show in maxpool
    got = forward(graph, tensors, False)[graph.outputs[0]]
    want = pool_naive(tensors["x"], kind, kernel, stride, padding)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_avgpool_excludes_padding() -> None:
    b = GraphBuilder()
    x = b.input("x", (1, 2, 5, 5))
    graph = b.build([b.pool(x, "avgpool", 3, 2, 1)])
    y = forward(graph, {"x": np.ones((1, 2, 5, 5))}, False)[graph.outputs[0]]
    np.testing.assert_allclose(y, 1.0, rtol=0, atol=1e-15)


def test_global_avgpool_and_flatten() -> None:
    b = GraphBuilder()
    x = b.input("x", (2, 3, 4, 5))
    g = b.add("global_avgpool", [x], name="gap")
    graph = b.build([b.add("flatten", [g], name="flat")])
    tensors = make_tensors(graph, SEED)
    values = forward(graph, tensors, False)
    assert values["gap"].shape == (2, 3, 1, 1)
    np.testing.assert_allclose(values["flat"], tensors["x"].mean(axis=(2, 3)), rtol=1e-14)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (5, 4)])
def test_batchnorm_forward_formula(mode: str, shape: tuple) -> None:
    b = GraphBuilder()
    x = b.input("x", shape)
    graph = b.build([b.batchnorm(x, eps=1e-3, name="bn")])
    t = make_tensors(graph, SEED)
    got = run_reference(graph, t, make_cotangents(graph, SEED), mode)["bn"]
    want = np.empty(shape)
    for c in range(shape[1]):
        xc = t["x"][:, c]
        if mode == "training":
            mean = xc.sum() / xc.size
            var = ((xc - mean) ** 2).sum() / xc.size  # biased
        else:
            mean, var = t["bn.running_mean"][c], t["bn.running_var"][c]
        want[:, c] = (xc - mean) / np.sqrt(var + 1e-3) * t["bn.gamma"][c] + t["bn.beta"][c]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_elementwise_forward() -> None:
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    y = b.input("y", (3,))
    outs = [b.add(op, [x], name=op) for op in ("relu", "relu6", "sigmoid")]
    outs.append(b.add("mul", [x, y], name="mul"))
    graph = b.build(outs)
    xv = np.array([[-1.0, 0.5, 7.0], [3.0, -800.0, 800.0]])
    yv = np.array([2.0, -1.0, 0.5])
    v = forward(graph, {"x": xv, "y": yv}, False)
    np.testing.assert_array_equal(v["relu"], np.maximum(xv, 0))
    np.testing.assert_array_equal(v["relu6"], np.minimum(np.maximum(xv, 0), 6))
    np.testing.assert_allclose(v["sigmoid"], expit(xv), rtol=1e-15, atol=1e-300)
    assert np.isfinite(v["sigmoid"]).all()
    np.testing.assert_array_equal(v["mul"], xv * yv)


def test_shift_forward_matches_loops() -> None:
    """out[n, c, h, w] = x[n, c, h - dy_c, w - dx_c] inside the plane, zero elsewhere."""
    graph = single(_shift)
    node = graph[graph.outputs[0]]
    x = make_tensors(graph, SEED)["x"]
    got = forward(graph, {"x": x}, False)[node.name]
    want = np.zeros(x.shape)
    _, c, height, width = x.shape
    for ch, (dy, dx) in enumerate(node.attrs["offsets"]):
        for h in range(height):
            for w in range(width):
                if 0 <= h - dy < height and 0 <= w - dx < width:
                    want[:, ch, h, w] = x[:, ch, h - dy, w - dx]
    np.testing.assert_array_equal(got, want)


def test_gather_forward_and_scatter_add_backward() -> None:
    """out[:, j] = x[:, indices[j]]; gx[:, i] sums gy[:, j] over j with indices[j] = i."""
    indices = (3, 0, 3, 4, 1, 3, 0)
    graph = single(_gather(1, indices))
    out = graph.outputs[0]
    assert graph.shape(out) == (2, 7, 3, 2) and graph.macs() == 0
    x = make_tensors(graph, SEED)["x"]
    got = forward(graph, {"x": x}, False)[out]
    for j, i in enumerate(indices):
        np.testing.assert_array_equal(got[:, j], x[:, i])
    gy = make_cotangents(graph, SEED)[out]
    gx = backward(graph, forward(graph, {"x": x}, False), {out: gy}, False)["x"]
    want = np.zeros(x.shape)
    for j, i in enumerate(indices):
        want[:, i] += gy[:, j]
    np.testing.assert_allclose(gx, want, rtol=1e-15, atol=0)
    assert (gx[:, 2] == 0).all()  # channel 2 is never read
    b = GraphBuilder()
    x_in = b.input("x", (1, 4, 2, 2))
    with pytest.raises(ValueError, match="indices"):
        b.gather(x_in, 1, (0, 4))
    with pytest.raises(ValueError, match="indices"):
        b.gather(x_in, 1, ())


def test_reshape_transpose_pad_forward() -> None:
    b = GraphBuilder()
    x = b.input("x", (2, 6, 2, 3))
    shuffled = b.reshape(b.transpose(b.reshape(x, (2, 2, 3, 2, 3)), (0, 2, 1, 3, 4)), (2, 6, 2, 3))
    padded = b.pad(x, ((0, 0), (0, 0), (1, 0), (0, 2)))
    graph = b.build([shuffled, padded])
    xv = make_tensors(graph, SEED)["x"]
    v = forward(graph, {"x": xv}, False)
    # ShuffleNet's channel shuffle with g = 2 groups of n = 3: output channel i*g + j is
    # input channel j*n + i
    np.testing.assert_array_equal(v[shuffled], xv[:, [0, 3, 1, 4, 2, 5]])
    np.testing.assert_array_equal(v[padded], np.pad(xv, ((0, 0), (0, 0), (1, 0), (0, 2))))


# -- gradients: every op, both modes -------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spec", CONV_CASES, ids=lambda s: str(s))
def test_conv2d_gradients(spec: dict[str, Any], mode: str) -> None:
    fd_check(conv_graph(spec), mode)


@pytest.mark.parametrize(
    "spec", [s for s in CONV_CASES if s.get("groups", 1) == s["x"][1]], ids=str
)
def test_depthwise_batch_chunks_agree(
    spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The depthwise loops run in batch chunks; one sample per chunk gives the same result."""
    graph = conv_graph(spec)
    t = make_tensors(graph, SEED)
    cts = make_cotangents(graph, SEED)
    whole = run_reference(graph, t, cts, "training")
    monkeypatch.setattr(reference, "_CHUNK_BYTES", 1)
    chunked = run_reference(graph, t, cts, "training")
    for key in whole:
        np.testing.assert_allclose(chunked[key], whole[key], rtol=1e-13, atol=1e-15)


def test_conv2d_unread_rows_get_zero_gradient() -> None:
    graph = conv_graph(dict(x=(1, 2, 6, 6), out=2, kernel=1, stride=2, padding=0))
    t = make_tensors(graph, SEED)
    g = run_reference(graph, t, make_cotangents(graph, SEED), "training")["grad:x"]
    assert not g[:, :, 1::2].any() and not g[:, :, :, 1::2].any()
    assert g[:, :, ::2, ::2].all()


def _bn(shape: tuple) -> Callable[[GraphBuilder], str]:
    return lambda b: b.batchnorm(b.input("x", shape), eps=1e-3)


def _pool(kind: str, kernel: Any, stride: Any, padding: Any) -> Callable[[GraphBuilder], str]:
    return lambda b: b.pool(b.input("x", (2, 2, 5, 6)), kind, kernel, stride, padding)


def _unary(op: str) -> Callable[[GraphBuilder], str]:
    return lambda b: b.add(op, [b.input("x", (2, 3, 3, 2))])


def _mul(sa: tuple, sb: tuple, b_is_param: bool = False) -> Callable[[GraphBuilder], str]:
    def build(b: GraphBuilder) -> str:
        rhs = b.param("s", sb, "bn_gamma") if b_is_param else b.input("y", sb)
        return b.add("mul", [b.input("x", sa), rhs])

    return build


def _add(b: GraphBuilder) -> str:
    x = b.input("x", (2, 3, 2, 2))
    return b.add("add", [x, b.param("p", (2, 3, 2, 2), "bn_beta")])


def _add_broadcast(b: GraphBuilder) -> str:
    x = b.input("x", (2, 3, 2, 2))
    return b.add("add", [x, b.input("v", (2, 3, 1, 1))])  # a broadcast vector: gradient summed over H, W


def _add_same(b: GraphBuilder) -> str:
    x = b.input("x", (2, 3, 2, 2))
    return b.add("add", [x, x])  # one node feeding both operands: gradients accumulate


def _concat(axis: int) -> Callable[[GraphBuilder], str]:
    def build(b: GraphBuilder) -> str:
        shapes = (
            [(2, 1, 3, 2), (2, 3, 3, 2), (2, 2, 3, 2)]
            if axis == 1
            else [(2, 2, 3, 1), (2, 2, 3, 2)]
        )
        xs = [b.input(f"x{i}", s) for i, s in enumerate(shapes)]
        return b.add("concat", xs, axis=axis)

    return build


def _slice(axis: int, start: int, stop: int) -> Callable[[GraphBuilder], str]:
    return lambda b: b.add("slice", [b.input("x", (2, 4, 3, 5))], axis=axis, start=start, stop=stop)


def _linear(bias: bool) -> Callable[[GraphBuilder], str]:
    return lambda b: b.linear(b.input("x", (3, 5)), 4, bias=bias)


def _global(b: GraphBuilder) -> str:
    return b.add("global_avgpool", [b.input("x", (2, 3, 3, 4))])


def _flatten(b: GraphBuilder) -> str:
    return b.add("flatten", [b.input("x", (2, 3, 2, 2))])


def _reshape(b: GraphBuilder) -> str:
    return b.reshape(b.input("x", (2, 6, 2, 3)), (2, 3, 2, 2, 3))


def _transpose(b: GraphBuilder) -> str:
    return b.transpose(b.input("x", (2, 3, 4, 1, 2)), (0, 2, 1, 4, 3))


def _pad(b: GraphBuilder) -> str:
    return b.pad(b.input("x", (2, 3, 3, 2)), ((0, 0), (1, 2), (0, 1), (2, 0)))


def _shift(b: GraphBuilder) -> str:
    offsets = [(0, 0), (1, -1), (1, -1), (-2, 0), (0, 2), (-1, -1), (2, 2)]
    return b.shift(b.input("x", (2, 7, 4, 5)), offsets)


def _gather(axis: int, indices: tuple[int, ...]) -> Callable[[GraphBuilder], str]:
    # repeated and out-of-order indices, some input entries never read: the scatter-add
    return lambda b: b.gather(b.input("x", (2, 5, 3, 2)), axis, indices)


def _upsample(scale: tuple[int, int]) -> Callable[[GraphBuilder], str]:
    # each input pixel feeds an sh x sw block: its gradient is the block's sum
    return lambda b: b.upsample(b.input("x", (2, 3, 2, 3)), scale)


def _prelu(shape: tuple[int, ...]) -> Callable[[GraphBuilder], str]:
    # one slope per channel (axis 1): its gradient sums gy * min(x, 0) over the other axes
    return lambda b: b.prelu(b.input("x", shape))


OP_GRAPHS: dict[str, tuple[Callable[[GraphBuilder], str], dict[str, float]]] = {
    "batchnorm": (_bn((3, 2, 3, 2)), {}),
    "batchnorm_2d": (_bn((4, 3)), {}),
    "relu": (_unary("relu"), {}),
    "relu6": (_unary("relu6"), {"x": 5.0}),  # reaches both kinks
    "sigmoid": (_unary("sigmoid"), {"x": 3.0}),
    "add": (_add, {}),
    "add_same_node": (_add_same, {}),
    "add_broadcast": (_add_broadcast, {}),
    "mul_same": (_mul((2, 3, 2, 2), (2, 3, 2, 2)), {}),
    "mul_channel": (_mul((2, 3, 2, 2), (2, 3, 1, 1)), {}),
    "mul_both_broadcast": (_mul((1, 3, 1, 4), (2, 1, 3, 1)), {}),
    "mul_lower_rank_param": (_mul((2, 3, 2, 2), (3, 1, 1), b_is_param=True), {}),
    "concat_channels": (_concat(1), {}),
    "concat_width": (_concat(3), {}),
    "slice_channels": (_slice(1, 1, 3), {}),
    "slice_width": (_slice(3, 2, 5), {}),
    "avgpool_3s2p1": (_pool("avgpool", 3, 2, 1), {}),
    "avgpool_2s2": (_pool("avgpool", 2, 2, 0), {}),
    "avgpool_3s1p1": (_pool("avgpool", 3, 1, 1), {}),
    "avgpool_3x2s2x1p1x0": (_pool("avgpool", (3, 2), (2, 1), (1, 0)), {}),
    "maxpool_3s2p1": (_pool("maxpool", 3, 2, 1), {}),
    "maxpool_2s2": (_pool("maxpool", 2, 2, 0), {}),
    "maxpool_3s1p1": (_pool("maxpool", 3, 1, 1), {}),
    "global_avgpool": (_global, {}),
    "flatten": (_flatten, {}),
    "linear": (_linear(True), {}),
    "linear_nobias": (_linear(False), {}),
    "reshape": (_reshape, {}),
    "transpose": (_transpose, {}),
    "pad": (_pad, {}),
    "shift": (_shift, {}),
    "gather_channels": (_gather(1, (3, 0, 3, 4, 1, 3, 0)), {}),
    "gather_height": (_gather(2, (2, 2, 0)), {}),
    "upsample_2x2": (_upsample((2, 2)), {}),
    "upsample_3x1": (_upsample((3, 1)), {}),
    "prelu": (_prelu((2, 3, 3, 2)), {}),
    "prelu_2d": (_prelu((4, 3)), {}),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(OP_GRAPHS))
def test_op_gradients(case: str, mode: str) -> None:
    build, scale = OP_GRAPHS[case]
    fd_check(single(build), mode, scale)


def test_every_op_has_a_gradient_test() -> None:
    from convbench.graph import OPS, SOURCE_OPS

    covered = {"conv2d"}
    for build, _ in OP_GRAPHS.values():
        covered |= {n.op for n in single(build).ops}
    assert covered == set(OPS - SOURCE_OPS)


def test_batchnorm_training_gradient_sums_to_zero() -> None:
    """Through the batch statistics, dx has zero mean per channel (shift invariance)."""
    graph = single(_bn((4, 3, 2, 2)))
    t = make_tensors(graph, SEED)
    g = run_reference(graph, t, make_cotangents(graph, SEED), "training")["grad:x"]
    np.testing.assert_allclose(g.sum(axis=(0, 2, 3)), 0.0, atol=1e-13)


def test_upsample_is_nearest_and_sums_blocks() -> None:
    """out[n, c, h, w] = x[n, c, h // sh, w // sw]; the gradient sums each sh x sw block."""
    b = GraphBuilder()
    graph = b.build([b.upsample(b.input("x", (1, 1, 2, 2)), (2, 3))])
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    gy = np.arange(24.0).reshape(1, 1, 4, 6)
    out = run_reference(graph, {"x": x}, {graph.outputs[0]: gy}, "training")
    y = out[graph.outputs[0]]
    assert y.shape == (1, 1, 4, 6)
    for h in range(4):
        for w in range(6):
            assert y[0, 0, h, w] == x[0, 0, h // 2, w // 3]
    want = gy.reshape(2, 2, 2, 3).sum(axis=(1, 3))
    np.testing.assert_array_equal(out["grad:x"][0, 0], want)


def test_prelu_is_per_channel() -> None:
    """out = x where x > 0, else a_c * x with channel c's own slope; at x = 0 the input's
    gradient takes the slope (PyTorch's rule), and the slope's gradient sums gy * min(x, 0)."""
    b = GraphBuilder()
    graph = b.build([b.prelu(b.input("x", (1, 2, 1, 3)), name="act")])
    assert graph.param_count() == 2 and graph.macs() == 0
    x = np.array([[[[-2.0, 0.0, 3.0]], [[1.0, -4.0, 0.5]]]])
    a = np.array([0.1, 0.25])
    gy = np.array([[[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]]])
    out = run_reference(graph, {"x": x, "act.slope": a}, {"act": gy}, "training")
    np.testing.assert_array_equal(out["act"], [[[[-0.2, 0.0, 3.0]], [[1.0, -1.0, 0.5]]]])
    np.testing.assert_array_equal(out["grad:x"], [[[[0.1, 0.2, 3.0]], [[4.0, 1.25, 6.0]]]])
    np.testing.assert_array_equal(out["grad:act.slope"], [-2.0, -20.0])


def test_maxpool_ties_send_gradient_to_first_maximum() -> None:
    """Ties (common after ReLU) are not differentiable; like PyTorch, the first maximum of
    each window in row-major order takes the whole gradient."""
    b = GraphBuilder()
    graph = b.build([b.pool(b.input("x", (1, 1, 4, 4)), "maxpool", 3, 2, 1)])
    gy = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = run_reference(graph, {"x": np.zeros((1, 1, 4, 4))}, {graph.outputs[0]: gy}, "training")
    want = np.zeros((1, 1, 4, 4))
    want[0, 0, :2, :2] = gy[0, 0]
    np.testing.assert_array_equal(out["grad:x"], want)


def test_masked_weight_const_gets_no_gradient() -> None:
    """A diagonalwise-style weight: param * const mask; only the param is differentiated."""
    b = GraphBuilder()
    x = b.input("x", (2, 2, 4, 4))
    w = b.param("w", (2, 2, 3, 3), "he_normal", fan_in=18)
    mask = b.const("mask", (2, 2, 3, 3), value=np.eye(2)[:, :, None, None] * np.ones((1, 1, 3, 3)))
    wm = b.add("mul", [w, mask], name="wm")
    y = b.add("conv2d", [x, wm], stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    graph = b.build([y])
    for mode in MODES:
        grads = fd_check(graph, mode)
        assert not grads["w"][0, 1].any() and not grads["w"][1, 0].any()


# -- end to end ----------------------------------------------------------------------------
def small_cnn() -> Graph:
    b = GraphBuilder()
    x = b.input("x", (2, 3, 6, 6))
    h = b.conv2d(x, 4, 3, name="conv")
    h = b.act(b.batchnorm(h, name="bn"), "relu6")
    h = b.pool(h, "avgpool", 3, 2, 1)
    h = b.add("flatten", [h], name="flat")
    return b.build([b.linear(h, 3, name="fc")])


def small_unit() -> Graph:
    """ShuffleNet/MENet-like: a node with two consumers, slice, concat, mul, sigmoid, add."""
    b = GraphBuilder()
    x = b.input("x", (2, 4, 5, 5))
    left = b.add("slice", [x], axis=1, start=0, stop=2)
    right = b.add("slice", [x], axis=1, start=2, stop=4)
    dw = b.batchnorm(b.conv2d(right, 2, 3, stride=1, groups=2, name="dw"), name="bn")
    gate = b.act(b.conv2d(b.add("global_avgpool", [x]), 2, 1, bias=True, name="se"), "sigmoid")
    right = b.add("mul", [dw, gate])
    cat = b.add("concat", [left, right], axis=1)
    out = b.act(b.add("add", [cat, x]), "relu")
    pooled = b.pool(out, "maxpool", 3, 2, 1)
    return b.build([pooled, b.add("global_avgpool", [out], name="gap")])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("make", [small_cnn, small_unit], ids=["cnn", "unit"])
def test_end_to_end_gradients(make: Callable[[], Graph], mode: str) -> None:
    fd_check(make(), mode)


# -- run_reference and the backend ---------------------------------------------------------
def test_run_reference_keys() -> None:
    graph = small_unit()
    t = make_tensors(graph, SEED)
    cts = make_cotangents(graph, SEED)
    inf = run_reference(graph, t, cts, "inference")
    assert set(inf) == set(graph.outputs)
    train = run_reference(graph, t, cts, "training")
    sources = [n for n in graph.nodes if n.op in ("input", "param")]
    assert set(train) == set(graph.outputs) | {f"grad:{n.name}" for n in sources}
    assert not any(k.startswith("grad:") and graph[k[5:]].op == "const" for k in train)
    for n in sources:
        assert train[f"grad:{n.name}"].shape == n.shape
    for name in graph.outputs:
        assert inf[name].dtype == np.float64 and inf[name].shape == graph[name].shape
    # BN uses running statistics in inference and batch statistics in training
    assert not np.allclose(inf["gap"], train["gap"])
    with pytest.raises(ValueError):
        run_reference(graph, t, cts, "eval")


def test_unused_param_gets_zero_gradient() -> None:
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    b.param("unused", (3,), "zeros")
    graph = b.build([b.add("relu", [x])])
    out = run_reference(graph, make_tensors(graph, SEED), make_cotangents(graph, SEED), "training")
    np.testing.assert_array_equal(out["grad:unused"], np.zeros(3))


def _case(mode: str, **kw: Any) -> Case:
    return Case(
        suite="t", workload="w", kind="layer", params={}, backend="reference", mode=mode, **kw
    )


def test_backend_registered_and_info() -> None:
    backend = load_backend("reference")
    assert isinstance(backend, ReferenceBackend)
    info = backend.info()
    assert info.available and info.name == "reference"
    assert info.version == np.__version__ and info.devices == ["cpu"]
    assert backend.skip_reason(_case("inference")) is None
    assert backend.skip_reason(_case("inference", device="cuda"))
    assert backend.skip_reason(_case("inference", execution="compiled"))


@pytest.mark.parametrize("mode", MODES)
def test_backend_check_and_step(mode: str) -> None:
    graph = small_cnn()
    tensors = make_tensors(graph, SEED)
    originals = {k: v.copy() for k, v in tensors.items()}
    cts = make_cotangents(graph, SEED)
    want = run_reference(graph, tensors, cts, mode)
    prepared = ReferenceBackend().prepare(_case(mode, dtype="float16"), graph, tensors, cts)
    got = prepared.check()
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert prepared.details()["compute_dtype"] == "float64"
    prepared.step()
    prepared.sync()
    for k, v in originals.items():  # the caller's arrays are never touched
        np.testing.assert_array_equal(tensors[k], v)
    if mode == "training":  # check() took its gradients, then applied one SGD step
        fresh = ReferenceBackend().prepare(_case(mode), graph, tensors, cts)
        first, second = fresh.check(), fresh.check()
        stepped = dict(tensors)
        for n in graph.params:
            stepped[n.name] = tensors[n.name] - LEARNING_RATE * first[f"grad:{n.name}"]
        after_one = run_reference(graph, stepped, cts, mode)
        for key in after_one:
            np.testing.assert_allclose(second[key], after_one[key], rtol=1e-12, atol=1e-15)
        assert not np.allclose(second["fc"], first["fc"])
    else:
        np.testing.assert_array_equal(prepared.check()["fc"], want["fc"])
    prepared.close()
