"""The downsampling shortcut of ShuffleNet v1 and MENet: the authors' pool and order."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.data import make_tensors
from convbench.reference import run_reference
from convbench.workloads import build_graph


def pooled(x: np.ndarray, counted: bool) -> np.ndarray:
    """3x3 s2 average pool with one pixel of zero padding, by hand: divisor 9 (``counted``)
    or the number of real pixels in the window."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ones = np.pad(np.ones((h, w)), 1)
    out_h, out_w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    out = np.zeros((n, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            window = padded[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            out[:, :, i, j] = window.sum(axis=(2, 3)) / (9 if counted else ones[2 * i : 2 * i + 3, 2 * j : 2 * j + 3].sum())
    return out


@pytest.mark.parametrize("shortcut", ["counted", "excluded"])
def test_the_shortcut_is_a_pool_of_the_input_in_its_place(shortcut: str) -> None:
    params = {"in_channels": 6, "out_channels": 24, "size": 7, "groups": 3, "downsample": True, "shortcut": shortcut}
    graph = build_graph("shufflenet_v1_unit", params, 2)
    tensors = make_tensors(graph, 1)
    x = np.abs(tensors["x"])  # a unit's input follows a ReLU
    out = run_reference(graph, {**tensors, "x": x}, None, "inference")[graph.outputs[0]]
    pool = out[:, :6] if shortcut == "counted" else out[:, -6:]
    np.testing.assert_allclose(pool, pooled(x, counted=shortcut == "counted"), rtol=1e-12, atol=1e-12)
    other = pooled(x, counted=shortcut != "counted")
    assert not np.allclose(pool, other)  # the border means differ


@pytest.mark.parametrize(
    ("kind", "params"),
    [("shufflenet_v1", {"groups": 3}), ("shufflenet_v1", {"groups": 8}), ("menet", {"stage_channels": 228, "side_channels": 12, "groups": 3})],
)
def test_the_shortcut_changes_no_count(kind: str, params: dict) -> None:
    counted = build_graph(kind, params, 1)
    excluded = build_graph(kind, {**params, "shortcut": "excluded"}, 1)
    assert counted.param_count() == excluded.param_count() and counted.macs() == excluded.macs()
    assert counted.of_op("pad") and not excluded.of_op("pad")
