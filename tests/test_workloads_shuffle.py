"""Channel shuffle and channel split (ShuffleNet v1, v2)."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from convbench.data import make_tensors
from convbench.graph import GraphBuilder
from convbench.reference import forward
from convbench.workloads import build_graph
from convbench.workloads.shuffle import channel_shuffle


@pytest.mark.parametrize("channels, groups", [(12, 3), (12, 4), (8, 8), (6, 1)])
def test_channel_shuffle_definition(channels: int, groups: int) -> None:
    """g groups of n: output channel i * g + j is input channel j * n + i."""
    graph = build_graph("channel_shuffle", {"channels": channels, "size": 3, "groups": groups}, 2)
    x = make_tensors(graph, 1)["x"]
    y = forward(graph, {"x": x}, False)["shuffle"]
    n = channels // groups
    for i in range(n):
        for j in range(groups):
            np.testing.assert_array_equal(y[:, i * groups + j], x[:, j * n + i])
    assert graph.param_count() == 0 and graph.macs() == 0
    assert [node.op for node in graph.ops] == ["reshape", "transpose", "reshape"]
    # bytes: the transpose reads and writes everything; reshapes are views
    assert graph.bytes_moved(4) == 2 * 4 * x.size


def test_shuffling_with_g_then_n_groups_is_the_identity() -> None:
    b = GraphBuilder()
    x = b.input("x", (1, 12, 2, 2))
    y = channel_shuffle(b, channel_shuffle(b, x, 3), 4)
    graph = b.build([y])
    xv = make_tensors(graph, 2)["x"]
    np.testing.assert_array_equal(forward(graph, {"x": xv}, False)[y], xv)


def test_channel_split() -> None:
    graph = build_graph("channel_split", {"channels": 12, "size": 3, "parts": 3}, 2)
    x = make_tensors(graph, 1)["x"]
    values = forward(graph, {"x": x}, False)
    for i, name in enumerate(graph.outputs):
        np.testing.assert_array_equal(values[name], x[:, 4 * i : 4 * (i + 1)])
    with pytest.raises(pydantic.ValidationError, match="multiple of parts"):
        build_graph("channel_split", {"channels": 10, "size": 3, "parts": 3}, 1)
    with pytest.raises(pydantic.ValidationError, match="multiple of groups"):
        build_graph("channel_shuffle", {"channels": 10, "size": 3, "groups": 3}, 1)
