"""SNet49/146/535 multiply-adds under the alternative readings of ThunderNet's Table 1
that the module docstring of :mod:`convbench.workloads.thundernet` lists: none gives the
paper's 49 / 146 / 535 M together. Built here from convbench's own blocks, so the
documented figures are the graph's ``macs()``, not a hand count."""

from __future__ import annotations

import pytest

from convbench.graph import GraphBuilder
from convbench.workloads.shufflenet import _bn_act, shufflenet_v2_unit, stem
from convbench.workloads.thundernet import SNET


def _snet_macs(variant: str, kernel: int, downsampling: str, units: tuple[int, int, int]) -> float:
    conv1, stages, conv5 = SNET[variant]
    b = GraphBuilder()
    y = stem(b, b.input("x", (1, 3, 224, 224)), conv1)
    for s, (n, channels) in enumerate(zip(units, stages, strict=True), start=2):
        for u in range(n):
            y = shufflenet_v2_unit(b, y, channels, 2 if u == 0 else 1, f"s{s}.u{u}.", downsampling, kernel=kernel)
    if conv5:
        y = _bn_act(b, b.conv2d(y, conv5, 1, name="conv5"), "conv5")
    y = b.add("flatten", [b.add("global_avgpool", [y], name="pool")], name="flatten")
    return round(b.build([b.linear(y, 1000, name="fc")]).macs() / 1e6, 2)


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
