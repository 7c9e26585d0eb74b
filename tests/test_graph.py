"""The IR: shape inference, parameter counts, multiply-adds, bytes, and the workloads."""

from __future__ import annotations

import pytest

from convbench.data import make_tensors
from convbench.graph import GraphBuilder, GraphError
from convbench.workloads import WORKLOADS, build_graph
from convbench.workloads.mobilenet import mobilenet_v1_depthwise_layers


def test_conv_shapes_params_and_macs() -> None:
    b = GraphBuilder()
    x = b.input("x", (2, 8, 15, 15))
    y = b.conv2d(x, 16, 3, stride=2, groups=4, bias=True, name="c")
    g = b.build([y])
    assert g.shape("c") == (2, 16, 8, 8)  # (15 + 2 - 3) // 2 + 1
    assert g.shape("c.weight") == (16, 2, 3, 3)
    assert g.param_count() == 16 * 2 * 9 + 16
    assert g.macs() == 2 * 16 * 8 * 8 * 2 * 9
    # bytes: read x, w, b once, write y once (float32)
    assert g.bytes_moved(4) == 4 * (2 * 8 * 15 * 15 + 16 * 2 * 9 + 16 + 2 * 16 * 8 * 8)


def test_dilation_padding_pool_linear_shapes() -> None:
    b = GraphBuilder()
    x = b.input("x", (1, 4, 10, 10))
    y = b.conv2d(x, 4, 3, dilation=2, name="d")  # 'same' padding for odd kernels
    assert b.shape(y) == (1, 4, 10, 10)
    p = b.pool(y, "maxpool", 3, 2, 1)
    assert b.shape(p) == (1, 4, 5, 5)
    a = b.pool(p, "avgpool", 2)
    assert b.shape(a) == (1, 4, 2, 2)
    f = b.add("flatten", [b.add("global_avgpool", [a])])
    assert b.shape(f) == (1, 4)
    out = b.linear(f, 10, name="fc")
    g = b.build([out])
    assert g.shape("fc") == (1, 10)
    assert g.macs() == 1 * 4 * 10 * 10 * 4 * 9 + 4 * 10


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda b: b.add("add", [b.input("a", (1, 2)), b.input("b", (1, 3))]), "do not broadcast"),
        (lambda b: b.conv2d(b.input("a", (1, 6, 4, 4)), 8, 3, groups=4), "not divisible"),
        (lambda b: b.add("slice", [b.input("a", (1, 4))], axis=1, start=2, stop=9), "out of range"),
        (lambda b: b.add("nope", []), "unknown op"),
        (lambda b: b.add("relu", ["missing"]), "not defined"),
        (lambda b: b.conv2d(b.input("a", (1, 2, 2, 2)), 2, 5, padding=0), "does not fit"),
        (lambda b: b.reshape(b.input("a", (1, 6, 2)), (1, 5, 2)), "cannot be laid out"),
        (lambda b: b.transpose(b.input("a", (1, 6, 2)), (0, 2, 2)), "not a permutation"),
        (lambda b: b.pad(b.input("a", (1, 6, 2)), ((0, 0), (1, 1))), "per axis"),
        (lambda b: b.pad(b.input("a", (1, 6)), ((0, 0), (-1, 1))), ">= 0"),
        (lambda b: b.shift(b.input("a", (1, 2, 3, 3)), [(0, 0)]), "one offset per channel"),
        (lambda b: b.shift(b.input("a", (1, 2, 3, 3)), [(0, 0), (3, 0)]), "out of its 3x3 plane"),
        (lambda b: b.upsample(b.input("a", (1, 2, 3, 3)), (0, 2)), "two positive ints"),
        (lambda b: b.add("upsample", [b.input("a", (1, 2, 3, 3))], scale=(2.0, 2)), "two positive ints"),
        (lambda b: b.add("upsample", [b.input("a", (1, 2, 3, 3))], scale=2), "two positive ints"),
        (lambda b: b.add("upsample", [b.input("a", (1, 2, 3, 3))]), "two positive ints"),
        (lambda b: b.upsample(b.input("a", (1, 6)), 2), "4-D"),
        (lambda b: b.add("upsample", [b.input("a", (1, 2, 3, 3))], scale=(2, 2), mode="bilinear"), "nearest"),
        (lambda b: b.add("prelu", [b.input("a", (1, 2, 3, 3)), b.param("s", (3,), "prelu_slope")]), "one slope per channel"),
        (lambda b: b.add("prelu", [b.input("a", (1, 2, 3, 3)), b.param("s", (1,), "prelu_slope")]), "one slope per channel"),
        (lambda b: b.add("prelu", [b.input("a", (6,)), b.param("s", (6,), "prelu_slope")]), "rank >= 2"),
        (lambda b: b.add("prelu", [b.input("a", (1, 2, 3, 3))]), "takes"),
    ],
)
def test_malformed_graphs_are_rejected(build, message: str) -> None:
    with pytest.raises(GraphError, match=message):
        build(GraphBuilder())


def test_upsample_shape_and_counts() -> None:
    b = GraphBuilder()
    y = b.upsample(b.input("x", (2, 3, 4, 5)), (2, 3))
    g = b.build([y])
    assert g.shape(y) == (2, 3, 8, 15)
    assert g.macs() == 0 and g.param_count() == 0
    assert g.bytes_moved(4) == 4 * (2 * 3 * 4 * 5 + 2 * 3 * 8 * 15)


def test_prelu_shape_and_counts() -> None:
    """One slope parameter per channel; no multiply-adds (it is an activation)."""
    b = GraphBuilder()
    y = b.prelu(b.input("x", (2, 5, 3, 4)), name="act")
    g = b.build([y])
    assert g.shape(y) == (2, 5, 3, 4)
    assert g.shape("act.slope") == (5,) and g["act.slope"].attrs["init"] == "prelu_slope"
    assert g.param_count() == 5 and g.macs() == 0
    assert g.bytes_moved(4) == 4 * (2 * 2 * 5 * 3 * 4 + 5)
    slopes = make_tensors(g, 0)["act.slope"]
    assert ((slopes >= 0) & (slopes <= 0.5)).all() and len(set(slopes)) == 5


def test_batchnorm_statistics_are_constants_not_parameters() -> None:
    b = GraphBuilder()
    y = b.batchnorm(b.input("x", (1, 5, 2, 2)))
    g = b.build([y])
    assert g.param_count() == 10  # gamma and beta only (README, "Counting")
    assert {n.name for n in g.consts} == {"bn.running_mean", "bn.running_var"}


def test_mobilenet_v1_matches_published_figures() -> None:
    # Keras applications MobileNet(alpha=1.0, 224): 4,253,864 params of which 21,888 are
    # non-trainable BN moving statistics -> 4,231,976 trainable (our convention).
    # Howard et al. 2017, Table 1 / Table 8: 569 million multiply-adds, 4.2 million params.
    g = build_graph("mobilenet_v1", {}, 1)
    assert g.param_count() == 4_231_976
    assert round(g.macs() / 1e6) == 569
    assert g.shape(g.outputs[0]) == (1, 1000)


@pytest.mark.parametrize(
    "params, macs_m, params_m",
    [
        # Howard et al. 2017, Table 6 (width) and Table 7 (resolution): million MACs, params.
        ({"width": 0.75}, 325, 2.6),
        ({"width": 0.5}, 149, 1.3),
        ({"width": 0.25}, 41, 0.5),
        ({"resolution": 192}, 418, 4.2),
        ({"resolution": 160}, 290, 4.2),
        ({"resolution": 128}, 186, 4.2),
    ],
)
def test_mobilenet_v1_width_and_resolution_table(params: dict, macs_m: int, params_m: float) -> None:
    g = build_graph("mobilenet_v1", params, 1)
    assert abs(g.macs() / 1e6 - macs_m) <= 1  # the paper rounds inconsistently (290.7 -> 290)
    assert round(g.param_count() / 1e6, 1) == params_m


def test_depthwise_layers_of_mobilenet_v1() -> None:
    layers = mobilenet_v1_depthwise_layers()
    assert len(layers) == 13
    assert layers[0] == {"channels": 32, "size": 112, "kernel": 3, "stride": 1}
    assert layers[-1] == {"channels": 1024, "size": 7, "kernel": 3, "stride": 1}
    assert [lay["stride"] for lay in layers].count(2) == 4
    # the network's own depthwise convs have exactly these shapes
    g = build_graph("mobilenet_v1", {}, 1)
    dws = [n for n in g.of_op("conv2d") if n.attrs["groups"] > 1]
    assert [(g.shape(n.inputs[0])[1], g.shape(n.inputs[0])[2], n.attrs["stride"][0]) for n in dws] == [
        (lay["channels"], lay["size"], lay["stride"]) for lay in layers
    ]


def test_layer_workloads() -> None:
    g = build_graph("depthwise", {"channels": 32, "size": 112, "multiplier": 2, "bn": True, "act": "relu"}, 4)
    assert g.shape(g.outputs[0]) == (4, 64, 112, 112)
    assert g.macs() == 4 * 64 * 112 * 112 * 9
    g = build_graph("separable", {"in_channels": 32, "out_channels": 64, "size": 112}, 1)
    assert g.macs() == 32 * 112 * 112 * 9 + 64 * 32 * 112 * 112
    assert set(WORKLOADS) >= {"depthwise", "pointwise", "separable", "mobilenet_v1"}


def test_data_movement_shapes_and_bytes() -> None:
    b = GraphBuilder()
    x = b.input("x", (2, 6, 4, 5))
    r = b.reshape(x, (2, 3, 2, 4, 5), name="r")
    t = b.transpose(r, (0, 2, 1, 3, 4), name="t")
    p = b.pad(x, ((0, 0), (1, 0), (2, 3), (0, 1)), name="p")
    s = b.shift(x, [(1, -1)] * 6, name="s")
    g = b.build([t, p, s])
    assert g.shape("r") == (2, 3, 2, 4, 5)
    assert g.shape("t") == (2, 2, 3, 4, 5)
    assert g.shape("p") == (2, 7, 9, 6)
    assert g.shape("s") == (2, 6, 4, 5)
    assert g.macs() == 0 and g.param_count() == 0
    n = 2 * 6 * 4 * 5
    # reshape is a view (0 bytes); transpose and shift read and write every element
    assert g.bytes_moved(4) == 4 * (2 * n + 2 * n + (n + 2 * 7 * 9 * 6))
