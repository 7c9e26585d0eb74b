"""ECA: the kernel rules, the forward against a direct NumPy ECA, finite-difference
gradients of the float64 reference, and the counts of the layer and ECA-MobileNetV2."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from convbench.data import make_tensors
from convbench.graph import GraphBuilder, GraphError
from convbench.reference import forward
from convbench.workloads import WORKLOADS, build_graph
from convbench.workloads.eca import adaptive_kernel, released_kernel
from tests.test_reference import fd_check


def test_adaptive_kernel_is_the_papers_rule() -> None:
    # t = int(|(log2 C + 1) / 2|), k = t if odd else t + 1
    assert [adaptive_kernel(c) for c in (16, 64, 128, 256, 512, 1024, 2048)] == [3, 3, 5, 5, 5, 5, 7]
    assert adaptive_kernel(2) == 1 and adaptive_kernel(8) == 3


def test_released_rule_of_eca_mobilenet_v2() -> None:
    # models/eca_mobilenetv2.py: ksize = 1 if c < 96 else 3 (c <= 96 in the first commit)
    assert [released_kernel(c) for c in (16, 24, 32, 64, 96, 160, 320)] == [1, 1, 1, 1, 3, 3, 3]
    assert released_kernel(96, "released-2019") == 1 and released_kernel(160, "released-2019") == 3


def _eca(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    k = w.size
    y = x.mean(axis=(2, 3))  # (N, C)
    yp = np.pad(y, ((0, 0), ((k - 1) // 2, (k - 1) // 2)))
    z = np.stack([yp[:, c : c + k] @ w for c in range(x.shape[1])], axis=1)
    return x * (1 / (1 + np.exp(-z)))[:, :, None, None]


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_forward_is_the_authors_eca_layer(kernel: int) -> None:
    graph = build_graph("eca", {"channels": 9, "size": 5, "kernel": kernel}, 2)
    t = make_tensors(graph, 3)
    assert t["eca.conv.weight"].shape == (1, 1, kernel, 1)
    y = forward(graph, t, False)["eca"]
    np.testing.assert_allclose(y, _eca(t["x"], t["eca.conv.weight"].ravel()), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize(
    "params", [{"channels": 6, "size": 3, "kernel": 3}, {"channels": 5, "size": 4, "kernel": 1}, {"channels": 16, "size": 2}], ids=str
)
def test_reference_gradients_match_finite_differences(params: dict, mode: str) -> None:
    fd_check(build_graph("eca", params, 2), mode)


def test_counts() -> None:
    g = build_graph("eca", {"channels": 256, "size": 8}, 2)  # adaptive: k = 5
    assert g.param_count() == 5 and g.macs() == 2 * 256 * 5
    net = WORKLOADS["eca_mobilenet_v2"]
    base = build_graph("mobilenet_v2", {}, 1)
    counts = {c.name: net.build(c.params, 1) for c in net.configs}
    # 17 blocks: 10 in the 16/24/32/64 stages (k = 1), 3 + 3 + 1 in 96/160/320 (k = 3)
    assert counts["1.0 released"].param_count() == base.param_count() + 10 + 7 * 3 == 3_504_903
    assert counts["1.0 released-2019"].param_count() == base.param_count() + 13 + 4 * 3 == 3_504_897
    assert len(counts["1.0 released"].of_op("sigmoid")) == 17
    # ECA sits in the residual branch: each block's residual add reads the ECA output
    g = counts["1.0 released"]
    assert all(g[n.name].inputs[0].endswith(".eca") for n in g.of_op("add"))


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="odd"):
        build_graph("eca", {"channels": 8, "size": 5, "kernel": 4}, 1)
    with pytest.raises(GraphError, match="odd"):
        b = GraphBuilder()
        b.eca(b.input("x", (1, 4, 5, 5)), 2)
