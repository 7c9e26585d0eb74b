"""Group convolutions and their forms: native, blockdiag, split."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from convbench.data import make_cotangents, make_tensors
from convbench.reference import forward, run_reference
from convbench.variants import parse_variant
from convbench.verify import verify
from convbench.workloads import build_graph


def same_function(kind: str, params: dict, label: str, mode: str, batch: int = 2) -> None:
    graph = build_graph(kind, params, batch)
    variant = parse_variant(label)
    assert variant.applies(graph)
    rewritten = variant.apply(graph)
    assert [(n.name, n.shape) for n in rewritten.params] == [(n.name, n.shape) for n in graph.params]
    cot = make_cotangents(graph, 3)
    want = run_reference(graph, make_tensors(graph, 3), cot, mode)
    got = run_reference(rewritten, make_tensors(rewritten, 3), cot, mode)
    result = verify(got, want, 1e-11)
    assert result.ok, (label, result.error, result.worst, result.missing)


GROUP_CASES = [
    {"in_channels": 12, "out_channels": 18, "size": 6, "groups": 3},
    {"in_channels": 8, "out_channels": 8, "size": 7, "groups": 4, "kernel": 3, "stride": 2, "bias": True},
    {"in_channels": 6, "out_channels": 4, "size": 5, "groups": 2, "kernel": 3, "bn": True, "act": "relu"},
]


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("label", ["blockdiag", "split"])
@pytest.mark.parametrize("params", GROUP_CASES, ids=str)
def test_group_conv_forms_equal_native(params: dict, label: str, mode: str) -> None:
    same_function("group_conv", params, label, mode)


def test_group_conv_shapes_params_macs() -> None:
    g = build_graph("group_conv", {"in_channels": 12, "out_channels": 18, "size": 8, "groups": 3, "kernel": 3, "stride": 2}, 2)
    assert g.shape(g.outputs[0]) == (2, 18, 4, 4)
    assert g.param_count() == 18 * 4 * 9
    assert g.macs() == 2 * 18 * 4 * 4 * 4 * 9
    with pytest.raises(pydantic.ValidationError, match="multiples of groups"):
        build_graph("group_conv", {"in_channels": 12, "out_channels": 10, "size": 8, "groups": 3}, 1)


def test_blockdiag_weight_is_block_diagonal_and_multiplies_macs() -> None:
    graph = build_graph("group_conv", {"in_channels": 6, "out_channels": 4, "size": 5, "groups": 2, "kernel": 3}, 1)
    rewritten = parse_variant("blockdiag").apply(graph)
    conv = rewritten["gconv"]
    assert conv.attrs["groups"] == 1 and rewritten.shape(conv.inputs[1]) == (4, 6, 3, 3)
    values = forward(rewritten, make_tensors(rewritten, 1), False)
    dense = values[conv.inputs[1]]
    w = make_tensors(graph, 1)["gconv.weight"]
    np.testing.assert_array_equal(dense[:2, :3], w[:2])
    np.testing.assert_array_equal(dense[2:, 3:], w[2:])
    assert not dense[:2, 3:].any() and not dense[2:, :3].any()
    assert rewritten.macs() == 2 * graph.macs()  # multiplies by the number of groups
    assert parse_variant("split").apply(graph).macs() == graph.macs()


def test_blockdiag_leaves_depthwise_and_split_takes_every_grouped_conv() -> None:
    dw = build_graph("depthwise", {"channels": 6, "size": 5, "multiplier": 2}, 1)
    assert not parse_variant("blockdiag").applies(dw)
    assert parse_variant("split").applies(dw)
    same_function("depthwise", {"channels": 6, "size": 5, "multiplier": 2, "bias": True}, "split", "training")
    dense = build_graph("group_conv", {"in_channels": 4, "out_channels": 4, "size": 3, "groups": 1}, 1)
    assert not parse_variant("blockdiag").applies(dense) and not parse_variant("split").applies(dense)
    split = parse_variant("split").apply(dw)
    assert len([n for n in split.of_op("conv2d")]) == 6


@pytest.mark.parametrize("label", ["blockdiag", "split", "diagonalwise", "blockdiag+diagonalwise"])
def test_shufflenet_unit_forms(label: str) -> None:
    params = {"in_channels": 12, "out_channels": 24, "size": 6, "groups": 3, "downsample": True}
    same_function("shufflenet_v1_unit", params, label, "training")
    same_function("shufflenet_v1_unit", {"in_channels": 24, "out_channels": 24, "size": 5, "groups": 2}, label, "training")


def test_shufflenet_unit_validation() -> None:
    with pytest.raises(pydantic.ValidationError, match="must equal"):
        build_graph("shufflenet_v1_unit", {"in_channels": 12, "out_channels": 24, "size": 6}, 1)
    with pytest.raises(pydantic.ValidationError, match="groups"):
        build_graph("shufflenet_v1_unit", {"in_channels": 12, "out_channels": 20, "size": 6, "groups": 3, "downsample": True}, 1)
