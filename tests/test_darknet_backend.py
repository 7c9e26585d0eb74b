"""The darknet backend: the cfg/weights writer and libdarknet's outputs against the reference.

Needs Debian's ``darknet`` package (``apt-get install darknet``); without libdarknet the
tests that run it are skipped with that reason. libdarknet is loaded through ctypes, no
other framework is imported.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from convbench_darknet import DarknetBackend
from convbench_darknet.lower import DARKNET_BN_EPS, lower
from convbench_darknet.prepared import DarknetPrepared

from convbench.backend import UnsupportedCase
from convbench.data import make_tensors
from convbench.graph import Graph, GraphBuilder
from convbench.variants import parse_variant
from convbench.workloads import build_graph
from tests.backends.graphs import (
    assert_matches,
    assert_restores_and_updates,
    errors,
    masked_conv_graph,
    prepare,
)

BACKEND = DarknetBackend()
INFO = BACKEND.info()
needs_darknet = pytest.mark.skipif(not INFO.available, reason=f"libdarknet is not installed ({INFO.reason})")


def conv_bn_relu() -> Graph:
    b = GraphBuilder()
    x = b.input("x", (2, 3, 6, 6))
    y = b.act(b.batchnorm(b.conv2d(x, 4, 3, name="c")), "relu")
    return b.build([y])


def residual_graph() -> Graph:
    """conv -> conv (shortcut from the first), concat (route), maxpool, gap, linear."""
    b = GraphBuilder()
    x = b.input("x", (2, 4, 8, 8))
    a = b.act(b.conv2d(x, 8, 3, bias=True, name="a"), "relu")
    c = b.conv2d(a, 8, 3, groups=8, bias=True, name="dw")
    s = b.act(b.add("add", [c, a], name="sum"), "relu")
    p = b.conv2d(a, 4, 1, bias=True, name="p")
    y = b.add("concat", [s, p], name="cat", axis=1)
    y = b.pool(y, "maxpool", 3, stride=2, padding=1)
    y = b.act(b.conv2d(y, 6, 3, stride=2, padding=0, bias=True, name="s2"), "sigmoid")
    feat = b.add("flatten", [b.add("global_avgpool", [y], name="gap")], name="flat")
    return b.build([b.linear(feat, 5, name="fc")])


def pointwise_graph() -> Graph:
    """1x1 convs of stride 2 (darknet ignores their stride: subsampled first) and a 1x1 conv
    reading a value the shortcut reads too (its backward overwrites that delta: a route copy)."""
    b = GraphBuilder()
    x = b.input("x", (2, 4, 8, 8))
    a = b.act(b.conv2d(x, 6, 3, bias=True, name="a"), "relu")
    d = b.conv2d(a, 6, 1, stride=2, padding=0, bias=True, name="d")
    e = b.conv2d(b.conv2d(a, 6, 3, stride=2, bias=True, name="e1"), 6, 1, bias=True, name="e2")
    s = b.act(b.add("add", [d, e], name="s"), "relu")
    return b.build([b.add("add", [b.conv2d(s, 6, 1, bias=True, name="t"), s], name="out")])


def upsample_graph() -> Graph:
    """conv -> nearest upsample x2 ([upsample] stride=2) -> conv."""
    b = GraphBuilder()
    x = b.input("x", (2, 3, 5, 5))
    y = b.upsample(b.act(b.conv2d(x, 4, 3, bias=True, name="a"), "relu"), 2, name="up")
    return b.build([b.conv2d(y, 5, 3, bias=True, name="b")])


def test_upsample_is_darknets_upsample_layer() -> None:
    g = upsample_graph()
    low = lower(g, make_tensors(g, 0))
    assert [layer.kind for layer in low.layers] == ["convolutional", "upsample", "convolutional"]
    assert "[upsample]\nstride=2\n" in low.cfg(2, 0.01)
    b = GraphBuilder()
    odd = b.build([b.upsample(b.conv2d(b.input("x", (1, 2, 4, 4)), 2, 3), (2, 1))])
    with pytest.raises(UnsupportedCase, match="square"):
        lower(odd, make_tensors(odd, 0))


def test_prelu_is_unsupported_with_the_reason() -> None:
    """darknet's activations have no learned per-channel slope (leaky is a fixed 0.1)."""
    b = GraphBuilder()
    g = b.build([b.prelu(b.conv2d(b.input("x", (1, 2, 4, 4)), 3, 3, bias=True, name="c"), name="act")])
    with pytest.raises(UnsupportedCase, match="no PReLU"):
        lower(g, make_tensors(g, 0))


def test_cfg_sections_and_options() -> None:
    g = conv_bn_relu()
    cfg = lower(g, make_tensors(g, 0)).cfg(2, 0.01)
    assert cfg.startswith("[net]\nbatch=2\n") and "height=6\nwidth=6\nchannels=3" in cfg
    conv = cfg.split("[convolutional]\n")[1]
    assert conv.split("\n")[:7] == ["filters=4", "size=3", "stride=1", "padding=1", "groups=1", "batch_normalize=1", "activation=relu"]
    assert "_eps" not in conv and "_fields" not in conv  # private options never reach the cfg


def test_weights_file_layout() -> None:
    g = conv_bn_relu()
    t = make_tensors(g, 0)
    data = lower(g, t).weights()
    assert struct.unpack("<3iQ", data[:20]) == (0, 2, 0, 0)
    body = np.frombuffer(data[20:], dtype="<f4").astype(np.float64)
    n = 4
    assert body.size == 4 * n + 4 * 3 * 9
    gamma, beta, mean, var = (t[f"bn.{k}"] for k in ("gamma", "beta", "running_mean", "running_var"))
    np.testing.assert_allclose(body[:n], beta, rtol=1e-6)
    np.testing.assert_allclose(body[n : 2 * n], gamma, rtol=1e-6)
    np.testing.assert_allclose(body[2 * n : 3 * n], mean, rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(body[3 * n : 4 * n]) + DARKNET_BN_EPS, np.sqrt(var + 1e-5), rtol=1e-6)
    np.testing.assert_allclose(body[4 * n :], t["c.weight"].reshape(-1), rtol=1e-6)


def test_shared_input_of_a_1x1_conv_is_routed_in_training() -> None:
    g = pointwise_graph()
    kinds = {mode: [layer.kind for layer in lower(g, make_tensors(g, 0), mode).layers] for mode in (False, True)}
    assert kinds[False].count("maxpool") == 1  # the stride-2 1x1 conv's subsampling
    assert kinds[True].count("route") == kinds[False].count("route") + 1


@needs_darknet
def test_darknet_saves_the_weights_it_loaded(tmp_path: Path) -> None:
    """darknet's own save_weights writes back byte for byte the file we wrote."""
    from convbench_darknet.prepared import build

    g = residual_graph()
    lowered = lower(g, make_tensors(g, 0))
    dn, net = build(lowered, 2, tmp_path)
    dn.lib.save_weights(net, str(tmp_path / "saved.weights").encode())
    assert (tmp_path / "saved.weights").read_bytes() == (tmp_path / "net.weights").read_bytes()
    dn.lib.free_network(net)


def test_unavailable_reason_says_how_to_install() -> None:
    code = (
        "from convbench_darknet import DarknetBackend\n"
        "i = DarknetBackend().info()\n"
        "assert not i.available and 'apt-get install darknet' in i.reason, i.reason\n"
    )
    env = dict(os.environ, CONVBENCH_DARKNET_LIB="/nonexistent/libdarknet.so")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)


@needs_darknet
def test_info() -> None:
    assert INFO.devices == ["cpu"] and INFO.version and INFO.environment["library"].endswith("libdarknet.so")


@needs_darknet
@pytest.mark.parametrize("name", ["conv_bn_relu", "residual", "pointwise", "masked_conv", "upsample"])
def test_inference_matches_reference(name: str) -> None:
    graph = {"conv_bn_relu": conv_bn_relu, "residual": residual_graph, "pointwise": pointwise_graph, "masked_conv": masked_conv_graph, "upsample": upsample_graph}[name]()
    assert_matches(BACKEND, graph, mode="inference").close()


@needs_darknet
@pytest.mark.parametrize("variant", ["native", "diagonalwise"])
def test_mobilenet_inference(variant: str) -> None:
    graph = parse_variant(variant).apply(build_graph("mobilenet_v1", {"width": 0.25, "resolution": 64, "classes": 10}, 2))
    assert_matches(BACKEND, graph, mode="inference").close()


@needs_darknet
@pytest.mark.parametrize("variant", ["native", "pointwise", "diagonalwise", "upsample"])
def test_training_without_batchnorm_matches_reference(variant: str) -> None:
    """darknet's backward: the gradients of every param and the input (diagonalwise:
    chained through the mask to the depthwise param; upsample: each block summed)."""
    graph = {"pointwise": pointwise_graph, "upsample": upsample_graph}.get(variant, residual_graph)()
    if variant == "diagonalwise":
        graph = parse_variant(variant).apply(build_graph("depthwise", {"channels": 8, "size": 7, "kernel": 3, "bias": True}, 2))
    assert_matches(BACKEND, graph, mode="training").close()


@needs_darknet
def test_check_restores_and_sgd_updates() -> None:
    """darknet's update is SGD at 0.01 on the params (the masked weight's diagonal is the
    param), timed steps move the weights, and check() starts again from the initial ones."""

    def weights(prepared: DarknetPrepared) -> dict[str, np.ndarray]:
        held = prepared.weights()
        mask = prepared.lowered.values["dw.mask"]
        return {"dw.weight": (held.pop("dw.diag_weight") * mask).sum(axis=1, keepdims=True), **held}

    assert_restores_and_updates(BACKEND, weights)


@needs_darknet
def test_training_batchnorm_matches_on_large_planes() -> None:
    """darknet's training batchnorm (unbiased variance, eps on sqrt) is the IR's up to ~1/m."""
    graph = build_graph("pointwise", {"in_channels": 8, "out_channels": 12, "size": 28, "bn": True, "act": "relu"}, 8)
    assert_matches(BACKEND, graph, tol=1e-3, mode="training").close()
    small = build_graph("pointwise", {"in_channels": 8, "out_channels": 12, "size": 5, "bn": True, "act": "relu"}, 2)
    prepared, want = prepare(BACKEND, small, mode="training")
    assert max(errors(prepared.check(), want).values()) > 1e-3  # the unbiased variance shows
    prepared.close()


@pytest.mark.parametrize(
    ("kind", "params", "words"),
    [
        ("depthwise", {"channels": 8, "size": 6, "bn": True, "act": "relu6"}, "ReLU6"),
        ("channel_shuffle", {"channels": 12, "size": 4, "groups": 3}, "reshape/transpose"),
        ("shift", {"channels": 20, "size": 6}, "shift"),
        ("channel_split", {"channels": 12, "size": 4}, "slice"),
        ("thundernet_cem", {"c4": 8, "c5": 12, "out_channels": 10, "size": 4}, "exactly one NCHW input"),
        ("thundernet_sam", {"channels": 10, "rpn_channels": 12, "size": 4}, "exactly one NCHW input"),
    ],
)
def test_what_darknet_cannot_express_is_unsupported(kind: str, params: dict, words: str) -> None:
    graph = build_graph(kind, params, 2)
    with pytest.raises(UnsupportedCase, match=words):
        lower(graph, make_tensors(graph, 0))


@needs_darknet
@pytest.mark.parametrize(("field", "value", "words"), [("dtype", "float16", "float32 only"), ("layout", "nhwc", "NCHW only")])
def test_skip_reasons(field: str, value: object, words: str) -> None:
    from tests.backends.graphs import make_case

    reason = BACKEND.skip_reason(make_case(**{field: value}))
    assert reason is not None and words in reason


@needs_darknet
def test_more_threads_run_on_one_and_say_so() -> None:
    prepared, _ = prepare(BACKEND, conv_bn_relu(), threads=4)
    assert prepared.details()["threads_used"] == 1 and "one thread" in prepared.details()["threads_note"]
    prepared.close()
