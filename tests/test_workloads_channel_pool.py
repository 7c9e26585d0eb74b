"""Cross-channel max pooling: forward against a direct formula, finite-difference
gradients of the float64 reference, counts and bad parameters."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from convbench.data import make_tensors
from convbench.graph import GraphBuilder, GraphError
from convbench.reference import forward
from convbench.workloads import build_graph
from tests.test_reference import fd_check


@pytest.mark.parametrize("channels, group", [(12, 3), (8, 2), (5, 5), (4, 1)])
def test_forward_is_the_max_over_adjacent_channels(channels: int, group: int) -> None:
    graph = build_graph("channel_pool", {"channels": channels, "size": 5, "group": group}, 3)
    x = make_tensors(graph, 2)["x"]
    y = forward(graph, {"x": x}, False)["channel_pool"]
    want = x.reshape(3, channels // group, group, 5, 5).max(axis=2)
    np.testing.assert_array_equal(y, want)
    assert graph.param_count() == 0 and graph.macs() == 0


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_reference_gradients_match_finite_differences(mode: str) -> None:
    grads = fd_check(build_graph("channel_pool", {"channels": 6, "size": 3, "group": 3}, 2), mode)
    # one input of each group of three gets the whole cotangent, the others zero
    assert ((grads["x"] != 0).reshape(2, 2, 3, 3, 3).sum(axis=2) == 1).all()


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="multiple of group"):
        build_graph("channel_pool", {"channels": 10, "size": 4, "group": 3}, 1)
    b = GraphBuilder()
    with pytest.raises(GraphError, match="groups of 4"):
        b.channel_maxpool(b.input("x", (1, 6, 2, 2)), 4)
