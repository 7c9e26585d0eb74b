"""SNet49/146/535 multiply-adds under the alternative readings of ThunderNet's Table 1
that the module docstring of :mod:`convbench.workloads.thundernet` lists: none gives the
paper's 49 / 146 / 535 M together. Built by the workload's own builder, so the
documented figures are the graph's ``macs()``, not a hand count."""

from __future__ import annotations

import pytest

from convbench.workloads.thundernet import SNetParams, build_snet


def _snet_macs(variant: str, kernel: int, downsampling: str, units: tuple[int, int, int]) -> float:
    graph = build_snet(SNetParams(variant=variant), 1, kernel, downsampling, units)
    return round(graph.macs() / 1e6, 2)


@pytest.mark.parametrize(
    "kernel, downsampling, units, want",
    [
        (5, "torchvision", (4, 8, 4), (51.21, 161.14, 535.35)),  # convbench's snet
        (3, "torchvision", (4, 8, 4), (47.24, 152.76, 519.59)),
        (5, "original", (4, 8, 4), (51.23, 162.52, 539.88)),
        (3, "original", (4, 8, 4), (47.26, 154.15, 524.12)),
        (5, "torchvision", (3, 7, 3), (45.94, 138.38, 458.77)),
    ],
)
def test_snet_readings(kernel: int, downsampling: str, units: tuple[int, int, int], want: tuple[float, ...]) -> None:
    assert tuple(_snet_macs(v, kernel, downsampling, units) for v in ("49", "146", "535")) == want
