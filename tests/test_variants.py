"""Variants: diagonalwise computes what native computes, forward and gradients."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.data import make_cotangents, make_tensors
from convbench.reference import run_reference
from convbench.variants import diagonal_mask, parse_variant
from convbench.verify import verify
from convbench.workloads import build_graph


def _same_function(kind: str, params: dict, batch: int, label: str, mode: str) -> float:
    graph = build_graph(kind, params, batch)
    rewritten = parse_variant(label).apply(graph)
    tensors = make_tensors(rewritten, seed=7)
    cot = make_cotangents(graph, seed=7)
    want = run_reference(graph, make_tensors(graph, seed=7), cot, mode)
    got = run_reference(rewritten, tensors, cot, mode)
    result = verify(got, want, 1e-10)
    assert result.ok, (result.error, result.worst, result.missing)
    return result.error


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize(
    "params, label",
    [
        ({"channels": 64, "size": 6}, "diagonalwise"),  # 2 groups of 32
        ({"channels": 8, "size": 5}, "diagonalwise"),  # G = C: one dense conv
        ({"channels": 70, "size": 7, "stride": 2}, "diagonalwise(group_size=16)"),  # 70 = 4*16 + 6
        ({"channels": 5, "size": 6, "multiplier": 3, "bias": True}, "diagonalwise(group_size=2)"),
        ({"channels": 33, "size": 9, "kernel": 5, "stride": 2, "bn": True, "act": "relu6"}, "diagonalwise"),
        ({"channels": 70, "size": 7, "stride": 2}, "diagonalwise(group_size=16, remainder=pad)"),  # 70 -> 80
        ({"channels": 5, "size": 6, "multiplier": 3, "bias": True}, "diagonalwise(group_size=2, remainder=pad)"),
        ({"channels": 70, "size": 5}, "diagonalwise(group_size=16)+split"),  # the authors' TensorFlow form
        ({"channels": 70, "size": 5}, "diagonalwise(group_size=1024)"),  # the authors' Caffe form: one dense conv
    ],
)
def test_diagonalwise_equals_native(params: dict, label: str, mode: str) -> None:
    _same_function("depthwise", params, 2, label, mode)


def test_diagonalwise_equals_native_on_random_shapes() -> None:
    rng = np.random.default_rng(0)
    for _ in range(6):
        params = {
            "channels": int(rng.integers(2, 50)),
            "size": int(rng.integers(3, 9)),
            "kernel": int(rng.choice([1, 3, 5])),
            "stride": int(rng.integers(1, 3)),
            "multiplier": int(rng.integers(1, 3)),
        }
        label = f"diagonalwise(group_size={int(rng.integers(1, 40))})"
        _same_function("depthwise", params, 2, label, "training")


def test_diagonalwise_on_a_network_keeps_parameters_and_multiplies_macs() -> None:
    graph = build_graph("mobilenet_v1", {"width": 0.25, "resolution": 32, "classes": 10}, 1)
    rewritten = parse_variant("diagonalwise").apply(graph)
    assert [(n.name, n.shape) for n in rewritten.params] == [(n.name, n.shape) for n in graph.params]
    assert rewritten.param_count() == graph.param_count()
    assert rewritten.macs() > graph.macs()
    assert not any(n.op == "conv2d" and n.attrs["groups"] == rewritten.shape(n.inputs[0])[1] > 1 for n in rewritten.nodes)
    _same_function("mobilenet_v1", {"width": 0.25, "resolution": 32, "classes": 10}, 2, "diagonalwise", "training")


def test_remainder_pad_is_one_conv_over_zero_padded_channels() -> None:
    graph = build_graph("depthwise", {"channels": 70, "size": 7}, 1)
    split = parse_variant("diagonalwise(group_size=16)").apply(graph)
    padded = parse_variant("diagonalwise(group_size=16, remainder=pad)").apply(graph)
    convs = [n for n in padded.nodes if n.op == "conv2d"]
    assert len(convs) == 1 and convs[0].attrs["groups"] == 5 and padded.shape(convs[0].inputs[0])[1] == 80
    assert not any(n.op == "concat" for n in padded.nodes) and sum(n.op == "conv2d" for n in split.nodes) == 2
    assert padded.macs() == 80 * 16 * 7 * 7 * 9 > split.macs() == (64 * 16 + 6 * 6) * 7 * 7 * 9
    assert [(n.name, n.shape) for n in padded.params] == [(n.name, n.shape) for n in graph.params]
    assert parse_variant("diagonalwise(remainder=pad)").label == "diagonalwise(remainder=pad)"
    assert parse_variant("diagonalwise(remainder=split)").label == "diagonalwise"
    with pytest.raises(ValueError, match="remainder must be one of split, pad, got 'zero'"):
        parse_variant("diagonalwise(remainder=zero)")


def test_diagonalwise_macs_grow_by_the_group_size() -> None:
    graph = build_graph("depthwise", {"channels": 64, "size": 8}, 1)
    assert parse_variant("diagonalwise").apply(graph).macs() == 32 * graph.macs()


def test_mask_is_block_diagonal() -> None:
    mask = diagonal_mask(channels=4, group=2, multiplier=2)[:, :, 0, 0]
    assert mask.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1], [1, 0], [1, 0], [0, 1], [0, 1]]


def test_variant_labels() -> None:
    assert parse_variant("diagonalwise").label == "diagonalwise"
    assert parse_variant("diagonalwise(group_size=32)").label == "diagonalwise"
    assert parse_variant(" diagonalwise( group_size = 8 ) ").label == "diagonalwise(group_size=8)"
    for bad, message in [
        ("diagwise", "unknown variant"),
        ("diagonalwise(size=3)", "bad argument"),
        ("diagonalwise(group_size=x)", "must be int"),
        ("diagonalwise(group_size=0)", ">= 1"),
        ("native(", "malformed"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_variant(bad)


def test_variant_that_changes_nothing_is_reported() -> None:
    pw = build_graph("pointwise", {"in_channels": 4, "out_channels": 4, "size": 3}, 1)
    assert not parse_variant("diagonalwise").applies(pw)
    assert parse_variant("native").applies(pw)


def test_chained_variant_labels() -> None:
    chain = parse_variant(" onehot + diagonalwise( group_size = 8 ) ")
    assert chain.label == "onehot+diagonalwise(group_size=8)"
    assert parse_variant("blockdiag+diagonalwise(group_size=32)").label == "blockdiag+diagonalwise"
    for bad, message in [
        ("native+diagonalwise", "cannot be chained"),
        ("onehot+nope", "unknown variant"),
        ("onehot+", "malformed"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_variant(bad)


def test_chain_applies_only_when_every_step_changes_the_graph() -> None:
    shift = build_graph("shift", {"channels": 9, "size": 4}, 1)
    assert parse_variant("onehot+diagonalwise").applies(shift)
    assert not parse_variant("diagonalwise").applies(shift)  # no depthwise before onehot
    assert not parse_variant("onehot+onehot").applies(shift)
    assert not parse_variant("diagonalwise+onehot").applies(shift)
    unit = build_graph("shufflenet_v1_unit", {"in_channels": 12, "out_channels": 12, "size": 4, "groups": 3}, 1)
    both = parse_variant("blockdiag+diagonalwise").apply(unit)
    # the 3-channel depthwise conv becomes one dense conv (G = C = 3), the group convs dense ones
    assert [n.attrs["groups"] for n in unit.of_op("conv2d")] == [3, 3, 3]
    assert [n.attrs["groups"] for n in both.of_op("conv2d")] == [1, 1, 1]
    assert all(n.attrs["groups"] == 1 for n in parse_variant("blockdiag+split").apply(unit).of_op("conv2d"))


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize(
    "kind, params, label",
    [
        ("shufflenet_v1", {"groups": 3, "width": 0.25, "resolution": 32, "classes": 10}, "blockdiag+diagonalwise"),
        ("menet", {"stage_channels": 48, "side_channels": 4, "groups": 3, "init_channels": 12, "resolution": 32, "classes": 10}, "blockdiag"),
        ("shufflenet_v2", {"width": "0.5", "resolution": 32, "classes": 10, "downsampling": "original"}, "diagonalwise"),
        ("mobilenet_v2", {"width": 0.25, "resolution": 32, "classes": 10}, "split"),
        ("shiftresnet", {"expansion": 1, "resolution": 16}, "onehot+diagonalwise"),
    ],
)
def test_variants_of_networks_equal_native(kind: str, params: dict, label: str, mode: str) -> None:
    _same_function(kind, params, 2, label, mode)


def test_a_plugin_defines_a_backend_implemented_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant kind a registered plugin declares (``variant_kinds``) is a variant like
    ``kernel``: labels may name it, and backends that do not run it skip its cases."""
    from convbench.variants import backend_variants, known_variants

    monkeypatch.delenv("CONVBENCH_EXTRA_BACKENDS", raising=False)
    with pytest.raises(ValueError, match="unknown variant 'warpkernel'"):
        parse_variant("warpkernel")
    assert backend_variants() == {"kernel"}
    monkeypatch.setenv("CONVBENCH_EXTRA_BACKENDS", "warpfake=tests.fake_backends:WarpBackend")
    assert "warpkernel" in known_variants() and backend_variants() == {"kernel", "warpkernel"}
    variant = parse_variant("warpkernel")
    depthwise, pointwise = build_graph("depthwise", {"channels": 8, "size": 5}, 1), build_graph("pointwise", {"in_channels": 4, "out_channels": 8, "size": 5}, 1)
    assert variant.label == "warpkernel" and variant.applies(depthwise) and not variant.applies(pointwise)
    assert variant.apply(depthwise) is depthwise
