"""DSXplore's CIFAR MobileNet with SCCs in place of the pointwise convs (scc_mobilenet)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from convbench.data import make_tensors
from convbench.graph import scc_window_starts
from convbench.reference import run_reference
from convbench.workloads import build_graph
from convbench.workloads.scc_mobilenet import BLOCKS, SccMobileNetParams

#: input channels and stride of each block's depthwise conv, then its SCC's output channels
LAYERS = list(zip([32] + [c for c, _ in BLOCKS[:-1]], [s for _, s in BLOCKS], [c for c, _ in BLOCKS], strict=True))


def counted(groups: int, own: bool) -> tuple[int, int]:
    """(parameters, multiply-adds) at width 1.0, 32 px, batch 1, 10 classes, counted by hand:
    the SCC as its own C_out x C_in / G weight (``own``) or as the dense weight it runs."""
    params = 3 * 32 * 9 + 2 * 32 + 1024 * 10 + 10
    macs = 32 * 32 * 32 * 27 + 1024 * 10
    size = 32
    for c_in, stride, c_out in LAYERS:
        size //= stride
        window = c_in // groups if own else c_in
        params += 9 * c_in + c_in + 2 * c_in + c_out * window + 2 * c_out
        macs += size * size * (9 * c_in + c_out * window)
    return params, macs


@pytest.mark.parametrize(("form", "groups"), [("masked", 2), ("gather", 2), ("gather", 8), ("compact", 4)])
def test_parameters_and_multiply_adds_are_the_counted_ones(form: str, groups: int) -> None:
    graph = build_graph("scc_mobilenet", {"form": form, "groups": groups}, 1)
    params, macs = counted(groups, own=form != "masked")
    dense_macs = counted(groups, own=False)[1]
    assert graph.param_count() == params
    assert graph.macs() == (macs if form == "gather" else dense_macs)  # compact runs the dense conv
    assert graph.nodes[-1].shape == (1, 10)


@pytest.mark.parametrize(("groups", "overlap"), [(4, 0.25), (2, 0.5), (8, 0.75)])
def test_every_scc_reads_the_windows_its_groups_and_overlap_give(groups: int, overlap: float) -> None:
    graph = build_graph("scc_mobilenet", {"width": 0.25, "groups": groups, "overlap": overlap}, 1)
    for i, (c_in, _, c_out) in enumerate(LAYERS, start=1):
        c_in, c_out = c_in // 4, c_out // 4
        mask = graph[f"block{i}.scc.mask"].attrs["value"].reshape(c_out, c_in)
        starts = scc_window_starts(c_in, c_out, groups, overlap)
        for c, start in enumerate(starts):
            window = [(start + u) % c_in for u in range(c_in // groups)]
            assert sorted(np.flatnonzero(mask[c])) == sorted(window), (i, c)


def test_a_width_whose_channels_the_groups_do_not_divide_is_refused() -> None:
    with pytest.raises(ValidationError, match="not multiples of groups"):
        SccMobileNetParams(width=0.3, groups=8)
    with pytest.raises(ValidationError, match="multiple of 32"):
        SccMobileNetParams(resolution=48)


def test_the_tiny_network_runs_in_the_reference_and_trains_every_weight() -> None:
    graph = build_graph("scc_mobilenet", {"width": 0.25, "groups": 2, "overlap": 0.5}, 2)
    tensors = make_tensors(graph, 0)
    cotangents = {graph.outputs[0]: np.ones(graph[graph.outputs[0]].shape)}
    result = run_reference(graph, tensors, cotangents, "training")
    assert result["fc"].shape == (2, 10) and np.isfinite(result["fc"]).all()
    dw = result["grad:block3.dw.weight"]
    assert dw.shape == (32, 1, 3, 3) and np.abs(dw).sum() > 0
    assert np.abs(result["grad:block3.dw.bias"]).sum() > 0
