"""PC-DARTS's partial channel edge: the forward against a direct NumPy transcription of the
authors' MixedOp with one primitive, finite-difference gradients of the float64
reference, counts, the variants that apply, and bad parameters."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from convbench.data import make_tensors
from convbench.reference import conv2d, forward
from convbench.workloads import WORKLOADS, build_graph
from tests.test_reference import fd_check
from tests.test_workloads_shift import same_function

EPS = 1e-5


def _bn(y: np.ndarray, t: dict, name: str, training: bool) -> np.ndarray:
    if training:
        mean, var = y.mean(axis=(0, 2, 3)), y.var(axis=(0, 2, 3))
    else:
        mean, var = t[f"{name}.running_mean"], t[f"{name}.running_var"]
    gamma, beta = t.get(f"{name}.gamma", np.ones(y.shape[1])), t.get(f"{name}.beta", np.zeros(y.shape[1]))
    return (y - mean[:, None, None]) / np.sqrt(var[:, None, None] + EPS) * gamma[:, None, None] + beta[:, None, None]


def _half(x: np.ndarray, t: dict, name: str, k: int, stride: int, dilation: int, training: bool) -> np.ndarray:
    """ReLU, depthwise k x k (padding dilation (k - 1) / 2), 1x1 conv, BN."""
    c = x.shape[1]
    y = conv2d(np.maximum(x, 0), t[f"{name}.dw.weight"], stride=stride, padding=dilation * (k - 1) // 2, dilation=dilation, groups=c)
    return _bn(conv2d(y, t[f"{name}.pw.weight"]), t, f"{name}.bn", training)


def _mixed_op(x: np.ndarray, t: dict, op: str, k: int, stride: int, training: bool) -> np.ndarray:
    """The authors' MixedOp.forward with one op: x[:, :C//k] through it, the rest (max-pooled
    2x2 when the op strides) concatenated after it, then channel_shuffle(ans, k)."""
    kernel = int(op[-1])
    c = x.shape[1]
    head, rest = x[:, : c // k], x[:, c // k :]
    if op.startswith("sep"):
        y = _half(_half(head, t, "pcdarts.op.1", kernel, stride, 1, training), t, "pcdarts.op.2", kernel, 1, 1, training)
    else:
        y = _half(head, t, "pcdarts.op", kernel, stride, 2, training)
    if stride == 2:
        n, r, h, w = rest.shape
        rest = rest.reshape(n, r, h // 2, 2, w // 2, 2).max(axis=(3, 5))
    ans = np.concatenate([y, rest], axis=1)
    n, _, h, w = ans.shape
    return ans.reshape(n, k, c // k, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize(
    "params",
    [
        {"channels": 8, "size": 6, "op": "sep_conv_3x3"},
        {"channels": 12, "size": 7, "op": "sep_conv_5x5", "k": 3, "affine": True},
        {"channels": 8, "size": 6, "op": "dil_conv_3x3", "k": 2},
        {"channels": 12, "size": 8, "op": "dil_conv_5x5", "stride": 2},
        {"channels": 16, "size": 6, "op": "sep_conv_3x3", "stride": 2, "affine": True},
    ],
    ids=str,
)
def test_forward_is_the_authors_mixed_op_with_one_primitive(params: dict, training: bool) -> None:
    graph = build_graph("pcdarts", params, 2)
    t = make_tensors(graph, 3)
    y = forward(graph, t, training)["pcdarts"]
    want = _mixed_op(t["x"], t, params["op"], params.get("k", 4), params.get("stride", 1), training)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    size = params["size"] // params.get("stride", 1)
    assert y.shape == (2, params["channels"], size, size)


def test_shuffle_puts_the_op_channels_first_in_each_group() -> None:
    # concatenated channel j * (C / k) + i becomes output channel i * k + j: with C = 8,
    # k = 4 the op's 2 channels land at 0 and 4, the bypassed channel 2 at 1
    graph = build_graph("pcdarts", {"channels": 8, "size": 4}, 1)
    t = make_tensors(graph, 1)
    y = forward(graph, t, False)["pcdarts"]
    np.testing.assert_array_equal(y[:, 1], t["x"][:, 2])
    np.testing.assert_array_equal(y[:, [2, 3, 5, 6, 7]], t["x"][:, [4, 6, 3, 5, 7]])


def test_k_1_is_the_darts_edge() -> None:
    graph = build_graph("pcdarts", {"channels": 4, "size": 5, "k": 1, "op": "dil_conv_3x3"}, 1)
    assert not graph.of_op("slice", "concat", "transpose") and graph.outputs == ("pcdarts.bn",)


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize(
    "params",
    [
        {"channels": 8, "size": 4, "op": "sep_conv_3x3"},
        {"channels": 8, "size": 4, "op": "dil_conv_5x5", "stride": 2, "affine": True},
    ],
    ids=str,
)
def test_reference_gradients_match_finite_differences(params: dict, mode: str) -> None:
    fd_check(build_graph("pcdarts", params, 2), mode)


def test_counts() -> None:
    # C' = 4: sep_conv_3x3 2 (4*9 + 16) = 104 weights, each at 32x32 (stride 1)
    g = build_graph("pcdarts", {"channels": 16, "size": 32}, 1)
    assert g.param_count() == 104 and g.macs() == 104 * 32 * 32
    assert build_graph("pcdarts", {"channels": 16, "size": 32, "affine": True}, 1).param_count() == 104 + 2 * 2 * 4
    # dil_conv_5x5 at C' = 8, stride 2: 8*25 + 64 = 264 weights at 16x16
    g = build_graph("pcdarts", {"channels": 32, "size": 32, "op": "dil_conv_5x5", "stride": 2}, 2)
    assert g.param_count() == 264 and g.macs() == 2 * 264 * 16 * 16
    rows = {c.name: WORKLOADS["pcdarts"].build(c.params, 1) for c in WORKLOADS["pcdarts"].configs}
    assert rows["CIFAR search, cells 4-5 (32x16, sep_conv_5x5)"].param_count() == 2 * (8 * 25 + 64)


@pytest.mark.parametrize("label", ["diagonalwise", "diagonalwise(group_size=2)"])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_diagonalwise_computes_the_same_function(label: str, mode: str) -> None:
    same_function("pcdarts", {"channels": 12, "size": 8, "op": "dil_conv_5x5", "stride": 2}, label, mode)


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="multiple of k"):
        build_graph("pcdarts", {"channels": 10, "size": 4}, 1)
    with pytest.raises(pydantic.ValidationError, match="even size"):
        build_graph("pcdarts", {"channels": 8, "size": 5, "stride": 2}, 1)
    with pytest.raises(pydantic.ValidationError):
        build_graph("pcdarts", {"channels": 8, "size": 4, "op": "max_pool_3x3"}, 1)
    with pytest.raises(pydantic.ValidationError):
        build_graph("pcdarts", {"channels": 8, "size": 4, "stride": 3}, 1)
