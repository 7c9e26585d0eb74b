"""Sliding-channel convolution (DSXplore): the windows against the authors' CUDA kernel's
rule, the forward against a direct loop, finite-difference gradients, and the counts."""

from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest

from convbench.data import make_tensors
from convbench.graph import GraphError, index_runs, scc_gather_indices, scc_mask, scc_window_starts
from convbench.reference import forward
from convbench.workloads import WORKLOADS, build_graph
from convbench.workloads.scc import SccParams, scc_macs, scc_params
from tests.test_reference import fd_check


def test_window_starts_follow_the_kernel() -> None:
    # U = 4: starts floor(c * (1 - overlap) * 4) mod 8
    assert scc_window_starts(8, 6, 2, 0.5) == [0, 2, 4, 6, 0, 2]
    assert scc_window_starts(8, 5, 2, 0.25) == [0, 3, 6, 1, 4]
    assert scc_window_starts(8, 3, 1, 0.0) == [0, 0, 0]  # G = 1: every channel reads all
    # float32 as in the kernel: 25 * 0.67 * 16 is 268 in reals, 267.99998 in float32
    assert scc_window_starts(64, 26, 4, 0.33)[25] == 11
    assert math.floor(25 * (1 - 0.33) * 16) % 64 == 12
    with pytest.raises(GraphError):
        scc_window_starts(9, 4, 2, 0.5)
    with pytest.raises(GraphError):
        scc_window_starts(8, 4, 2, 1.0)


def test_mask_is_a_cyclic_window_of_u_channels() -> None:
    m = scc_mask(8, 6, 2, 0.5)[:, :, 0, 0]
    assert (m.sum(axis=1) == 4).all()
    np.testing.assert_array_equal(np.flatnonzero(m[3]), [0, 1, 6, 7])  # start 6, wraps


def _scc(x: np.ndarray, w: np.ndarray, groups: int, overlap: float) -> np.ndarray:
    c_in, c_out = x.shape[1], w.shape[0]
    u = c_in // groups
    out = np.zeros((x.shape[0], c_out, *x.shape[2:]))
    for c, start in enumerate(scc_window_starts(c_in, c_out, groups, overlap)):
        for i in range(u):
            out[:, c] += w[c, (start + i) % c_in] * x[:, (start + i) % c_in]
    return out


@pytest.mark.parametrize("groups", [1, 2, 4, 8])
@pytest.mark.parametrize("overlap", [0.25, 0.33, 0.5, 0.75])
def test_forward_is_the_sliding_window_conv(groups: int, overlap: float) -> None:
    p = {"in_channels": 16, "out_channels": 12, "size": 3, "groups": groups, "overlap": overlap}
    graph = build_graph("scc", p, 2)
    t = make_tensors(graph, 4)
    y = forward(graph, t, False)["scc"]
    np.testing.assert_allclose(y, _scc(t["x"], t["scc.weight"][:, :, 0, 0], groups, overlap), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize(
    "params",
    [
        {"in_channels": 6, "out_channels": 5, "size": 3, "groups": 2, "overlap": 0.33},
        {"in_channels": 8, "out_channels": 4, "size": 2, "groups": 4, "overlap": 0.5, "bn": True, "act": "relu"},
    ],
    ids=str,
)
def test_reference_gradients_match_finite_differences(params: dict, mode: str) -> None:
    grads = fd_check(build_graph("scc", params, 2), mode)
    mask = scc_mask(params["in_channels"], params["out_channels"], params["groups"], params["overlap"])
    assert (grads["scc.weight"][mask == 0] == 0).all()  # entries outside the windows stay zero


def test_counts() -> None:
    p = SccParams(in_channels=64, out_channels=32, size=7, groups=4, overlap=0.5)
    g = build_graph("scc", p.model_dump(), 2)
    assert scc_params(p) == 32 * 16 and g.param_count() == 32 * 64  # own vs dense masked
    assert scc_macs(p, 2) == 2 * 32 * 16 * 49 and g.macs() == 4 * scc_macs(p, 2)
    for c in WORKLOADS["scc"].configs:
        q = SccParams(**c.params)
        assert WORKLOADS["scc"].build(c.params, 1).macs() == q.groups * scc_macs(q, 1)


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="multiple of groups"):
        build_graph("scc", {"in_channels": 10, "out_channels": 4, "size": 3, "groups": 4}, 1)
    with pytest.raises(pydantic.ValidationError):
        build_graph("scc", {"in_channels": 8, "out_channels": 4, "size": 3, "overlap": 1.0}, 1)


def _scattered(w: np.ndarray, c_in: int, groups: int, overlap: float) -> np.ndarray:
    dense = np.zeros((w.shape[0], c_in))
    for c, start in enumerate(scc_window_starts(c_in, w.shape[0], groups, overlap)):
        dense[c, (start + np.arange(w.shape[1])) % c_in] = w[c]
    return dense


@pytest.mark.parametrize("groups, overlap", [(1, 0.5), (3, 0.33), (4, 0.75)])
def test_compact_form_trains_the_scc_weight_itself(groups: int, overlap: float) -> None:
    p = {"in_channels": 12, "out_channels": 10, "size": 3, "groups": groups, "overlap": overlap, "form": "compact"}
    graph = build_graph("scc", p, 2)
    u = 12 // groups
    assert graph.shape("scc.weight") == (10, u) and graph.param_count() == 10 * u and graph.macs() == 2 * 10 * 12 * 9
    t = make_tensors(graph, 6)
    y = forward(graph, t, False)["scc"]
    np.testing.assert_allclose(y, _scc(t["x"], _scattered(t["scc.weight"], 12, groups, overlap), groups, overlap), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_compact_gradients_match_finite_differences(mode: str) -> None:
    p = {"in_channels": 6, "out_channels": 5, "size": 3, "groups": 2, "overlap": 0.33, "form": "compact", "bn": True}
    fd_check(build_graph("scc", p, 2), mode)


# -- form gather: a channel gather, then a grouped 1x1 conv --------------------------------
def test_gather_indices_are_the_windows_in_order() -> None:
    # U = 4, starts 0, 2, 4, 6, 0 (mod 8): window 3 wraps
    idx = scc_gather_indices(8, 5, 2, 0.5)
    assert idx == (0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 0, 1, 0, 1, 2, 3)
    assert index_runs(idx) == [(0, 4), (2, 6), (4, 8), (6, 8), (0, 2), (0, 4)]
    assert index_runs([5]) == [(5, 6)] and index_runs([1, 2, 3, 7, 8]) == [(1, 4), (7, 9)]


@pytest.mark.parametrize("groups", [1, 2, 4, 8])
@pytest.mark.parametrize("overlap", [0.25, 0.33, 0.5, 0.75])
def test_gather_form_equals_the_masked_form(groups: int, overlap: float) -> None:
    """Weight (c, u) of the gather form is the masked weight's (c, (start_c + u) mod C_in):
    with those weights both forms give the same output (the SCC), and the gather form
    runs the SCC's own multiply-adds and holds its own parameters."""
    common = {"in_channels": 16, "out_channels": 12, "size": 3, "groups": groups, "overlap": overlap}
    masked = build_graph("scc", common, 2)
    gathered = build_graph("scc", {**common, "form": "gather"}, 2)
    u = 16 // groups
    p = SccParams(**common)
    assert gathered.shape("scc.gather") == (2, 12 * u, 3, 3)
    assert gathered.shape("scc.weight") == (12, u, 1, 1) and gathered["scc"].attrs["groups"] == 12
    assert gathered.param_count() == scc_params(p) and gathered.macs() == scc_macs(p, 2)
    t = make_tensors(masked, 4)
    dense = t["scc.weight"][:, :, 0, 0] * scc_mask(16, 12, groups, overlap)[:, :, 0, 0]
    own = np.zeros((12, u, 1, 1))
    for c, start in enumerate(scc_window_starts(16, 12, groups, overlap)):
        own[c, :, 0, 0] = dense[c, (start + np.arange(u)) % 16]
    y_masked = forward(masked, t, False)["scc"]
    y_gather = forward(gathered, {"x": t["x"], "scc.weight": own}, False)["scc"]
    np.testing.assert_allclose(y_gather, y_masked, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y_gather, _scc(t["x"], dense, groups, overlap), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize(
    "params",
    [
        {"in_channels": 6, "out_channels": 5, "size": 3, "groups": 2, "overlap": 0.33, "form": "gather"},
        {"in_channels": 8, "out_channels": 6, "size": 2, "groups": 4, "overlap": 0.75, "form": "gather", "bn": True, "act": "relu"},
    ],
    ids=str,
)
def test_gather_gradients_match_finite_differences(params: dict, mode: str) -> None:
    """The input gradient goes through the gather's scatter-add (every input channel is
    read by several windows here)."""
    fd_check(build_graph("scc", params, 2), mode)
