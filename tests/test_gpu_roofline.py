"""Rooflines on a GPU (convbench.peaks): the CUDA-core FMA peak for grouped convs, and the
warm-cache label. Pure arithmetic on made-up peaks: no GPU has been measured."""

from __future__ import annotations

import pytest

from convbench.graph import GraphBuilder
from convbench.peaks import cache_state, case_work, case_work_split, roofline_split

PEAKS = {"flops_per_s": 1e15, "bytes_per_s": 3e12, "fma_flops_per_s": 6e13, "l2_bytes": 50 << 20}


def graph():  # noqa: ANN201
    b = GraphBuilder()
    x = b.input("x", (8, 32, 14, 14))
    y = b.conv2d(x, 32, 3, groups=32, name="dw")
    return b.build([b.conv2d(y, 64, 1, name="pw")])


def test_grouped_conv_flops_are_bounded_by_the_fma_peak() -> None:
    g = graph()
    flops, fma, nbytes = case_work_split(g, "training", 2)
    assert (flops, nbytes) == case_work(g, "training", 2)
    dw = 2 * 8 * 32 * 14 * 14 * 9
    assert fma == pytest.approx(3 * dw)
    bound, limit, used = roofline_split(flops, fma, nbytes, PEAKS)
    assert used == "matmul+fma"
    compute = (flops - fma) / 1e15 + fma / 6e13
    assert bound == pytest.approx(max(compute, nbytes / 3e12))
    assert roofline_split(fma, fma, 0.0, PEAKS)[1:] == ("compute", "fma")
    no_fma = {k: v for k, v in PEAKS.items() if k != "fma_flops_per_s"}
    assert roofline_split(flops, fma, nbytes, no_fma)[2] == "matmul"


def test_warm_cases_that_fit_in_l2_are_labelled() -> None:
    assert cache_state(False, 1 << 20, PEAKS) == "warm_fits_l2"
    assert cache_state(False, 100 << 20, PEAKS) == "warm"
    assert cache_state(True, 1 << 20, PEAKS) == "cold"
    assert cache_state(False, 1 << 20, None) == "warm"
