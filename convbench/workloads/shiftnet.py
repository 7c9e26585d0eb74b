"""ShiftResNet (Wu et al. 2017, "Shift: A Zero FLOP, Zero Parameter Alternative to
Spatial Convolutions", arXiv 1711.08141): a CIFAR ResNet whose residual blocks are
conv-shift-conv modules, in convbench's IR.

ResNet-d for CIFAR (He et al. 2016): conv3x3 3 -> 16 + BN + ReLU on a 32 x 32 input; three
stages of n = (d - 2) / 6 blocks with 16, 32, 64 channels (stride 1, 2, 2 in a stage's
first block); global average pool; FC with bias to 10 classes. Each block is the
authors' ShiftConv: the CSC module (:func:`convbench.workloads.shift.shift_conv_block`:
1x1 conv to E * C_out + BN + ReLU, 3x3 shift, 1x1 conv with the block's stride + BN)
plus a shortcut (the input, or 1x1 conv with the stride + BN where the shape changes),
then ReLU. E is the expansion (the paper's "a = E c").

Published figures: the authors' table (github.com/alvinwan/shiftresnet-cifar, README,
"CIFAR-10 Accuracy") gives parameters in millions with two decimals,
counted with ``named_parameters()`` (BN scale and shift included: our convention). No
multiply-add figure is published for these networks; ours are exact counts of the convs
and the FC (the shift has none).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, Published, WorkloadKind, register
from convbench.workloads.shift import shift_conv_block

STAGE_CHANNELS = (16, 32, 64)


class ShiftResNetParams(BaseModel):
    """Depth (20, 56, 110 ...), expansion E, shift kernel, input resolution, classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    depth: Literal[20, 32, 44, 56, 110] = 20
    expansion: int = Field(6, ge=1)
    kernel: Literal[3, 5] = 3
    resolution: int = Field(32, ge=8)
    classes: int = Field(10, ge=1)


def build_shiftresnet(p: ShiftResNetParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, 3, p.resolution, p.resolution))
    y = b.act(b.batchnorm(b.conv2d(x, 16, 3, name="conv1"), name="conv1.bn"), "relu")
    blocks = (p.depth - 2) // 6
    for s, channels in enumerate(STAGE_CHANNELS, start=1):
        for i in range(blocks):
            stride = 2 if s > 1 and i == 0 else 1
            prefix = f"stage{s}.block{i + 1}."
            out = shift_conv_block(b, y, channels, stride, p.expansion, p.kernel, prefix)
            shortcut = y
            if stride != 1 or b.shape(y)[1] != channels:
                shortcut = b.conv2d(y, channels, 1, stride=stride, name=f"{prefix}shortcut")
                shortcut = b.batchnorm(shortcut, name=f"{prefix}shortcut.bn")
            y = b.act(b.add("add", [out, shortcut], name=f"{prefix}residual"), "relu")
    y = b.add("flatten", [b.add("global_avgpool", [y], name="pool")], name="flatten")
    return b.build([b.linear(y, p.classes, name="fc")])


SOURCE = "Wu et al. 2017 (arXiv 1711.08141), the authors' alvinwan/shiftresnet-cifar README, CIFAR-10 table: Params (M)"
CONFIGS = tuple(
    NamedConfig(f"ShiftResNet{d} {e}c", {"depth": d, "expansion": e}, Published(SOURCE, params=f"{m:.2f} M"))
    for d, e, m in (
        (20, 1, 0.03), (20, 3, 0.10), (20, 6, 0.19), (20, 9, 0.28),
        (56, 1, 0.10), (56, 3, 0.29), (56, 6, 0.58), (56, 9, 0.87),
        (110, 1, 0.20), (110, 3, 0.59), (110, 6, 1.18), (110, 9, 1.76),
    )
)  # fmt: skip

register(
    WorkloadKind(
        "shiftresnet",
        ShiftResNetParams,
        build_shiftresnet,
        "ShiftResNet for CIFAR (depth, expansion)",
        "network",
        configs=CONFIGS,
        published=CONFIGS[2].published,
    )  # fmt: skip
)
