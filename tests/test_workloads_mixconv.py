"""MixConv: the channel split, the forward against per-group depthwise convs, finite-
difference gradients of the float64 reference, counts, and the variants that apply."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from convbench.data import make_cotangents, make_tensors
from convbench.graph import GraphBuilder, GraphError, mixconv_splits
from convbench.reference import conv2d, forward, run_reference
from convbench.variants import parse_variant
from convbench.verify import verify
from convbench.workloads import WORKLOADS, build_graph
from tests.test_reference import fd_check


def test_splits_give_the_remainder_to_the_first_group() -> None:
    # the authors' _split_channels: floor(C / g) each, C mod g more in the first group
    assert mixconv_splits(10, 3) == [4, 3, 3]
    assert mixconv_splits(96, 4) == [24, 24, 24, 24]
    assert mixconv_splits(11, 4) == [5, 2, 2, 2]
    assert mixconv_splits(5, 1) == [5]
    with pytest.raises(GraphError, match="do not fit"):
        mixconv_splits(2, 3)


@pytest.mark.parametrize("stride", [1, 2])
def test_forward_is_a_depthwise_conv_per_group_concatenated(stride: int) -> None:
    graph = build_graph("mixconv", {"channels": 11, "size": 9, "kernels": [3, 5, 7], "stride": stride}, 2)
    t = make_tensors(graph, 3)
    y = forward(graph, t, False)["mixconv"]
    parts, start = [], 0
    for i, (k, c) in enumerate(zip((3, 5, 7), (5, 3, 3), strict=True)):
        w = t[f"mixconv.g{i}.weight"]
        assert w.shape == (c, 1, k, k)
        parts.append(conv2d(t["x"][:, start : start + c], w, stride=stride, padding=(k - 1) // 2, groups=c))
        start += c
    np.testing.assert_array_equal(y, np.concatenate(parts, axis=1))
    assert y.shape == (2, 11, 5 if stride == 2 else 9, 5 if stride == 2 else 9)


def test_one_kernel_is_a_plain_depthwise_conv() -> None:
    graph = build_graph("mixconv", {"channels": 6, "size": 5, "kernels": [5]}, 1)
    (conv,) = graph.ops
    assert conv.op == "conv2d" and conv.attrs["groups"] == 6 and graph.shape("mixconv.weight") == (6, 1, 5, 5)


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize(
    "params",
    [
        {"channels": 7, "size": 5, "kernels": [3, 5]},
        {"channels": 8, "size": 6, "kernels": [3, 5, 7], "stride": 2, "bias": True},
        {"channels": 5, "size": 4, "kernels": [1, 3, 5], "bn": True, "act": "relu6"},
    ],
    ids=str,
)
def test_reference_gradients_match_finite_differences(params: dict, mode: str) -> None:
    fd_check(build_graph("mixconv", params, 2), mode)


def test_counts() -> None:
    # 11 channels as 5 + 3 + 3 with kernels 3, 5, 7: 5*9 + 3*25 + 3*49 = 267 weights
    g = build_graph("mixconv", {"channels": 11, "size": 8, "kernels": [3, 5, 7]}, 1)
    assert g.param_count() == 267 and g.macs() == 267 * 64
    g = build_graph("mixconv", {"channels": 11, "size": 8, "kernels": [3, 5, 7], "stride": 2, "bn": True}, 2)
    assert g.param_count() == 267 + 2 * 11 and g.macs() == 2 * 267 * 16
    rows = {c.name: WORKLOADS["mixconv"].build(c.params, 1) for c in WORKLOADS["mixconv"].configs}
    block4 = rows["MixNet-S block 4 (24x6, 3-5-7, s2)"]  # 144 channels: 48 each
    assert block4.param_count() == 48 * (9 + 25 + 49) == 3_984 and block4.macs() == 3_984 * 28 * 28
    block10 = rows["MixNet-S block 10 (120x6, 3-5-7-9-11, s2)"]  # 720 channels: 144 each
    assert block10.param_count() == 144 * (9 + 25 + 49 + 81 + 121) == 41_040 and block10.macs() == 41_040 * 7 * 7


def test_kernels_from_a_suite_list_or_a_command_line_string() -> None:
    for kernels in ([3, 5], (3, 5), "3,5", "[3, 5]"):
        g = build_graph("mixconv", {"channels": 4, "size": 5, "kernels": kernels}, 1)
        assert [g.shape(f"mixconv.g{i}.weight")[2] for i in range(2)] == [3, 5]
    with pytest.raises(pydantic.ValidationError):
        build_graph("mixconv", {"channels": 4, "size": 5, "kernels": "3,x"}, 1)


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="odd"):
        build_graph("mixconv", {"channels": 8, "size": 5, "kernels": [3, 4]}, 1)
    with pytest.raises(pydantic.ValidationError, match="at least as many channels"):
        build_graph("mixconv", {"channels": 2, "size": 5, "kernels": [3, 5, 7]}, 1)
    with pytest.raises(GraphError, match="odd"):
        b = GraphBuilder()
        b.mixconv(b.input("x", (1, 4, 5, 5)), [2])


@pytest.mark.parametrize("label", ["diagonalwise", "diagonalwise(group_size=2)", "split"])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_variants_compute_the_same_function(label: str, mode: str) -> None:
    graph = build_graph("mixconv", {"channels": 11, "size": 6, "kernels": [3, 5, 7], "bn": True, "act": "relu"}, 2)
    variant = parse_variant(label)
    assert variant.applies(graph)
    rewritten = variant.apply(graph)
    cot = make_cotangents(graph, 5)
    want = run_reference(graph, make_tensors(graph, 5), cot, mode)
    got = run_reference(rewritten, make_tensors(rewritten, 5), cot, mode)
    result = verify(got, want, 1e-12)
    assert result.ok, (label, result.error, result.worst, result.missing)
