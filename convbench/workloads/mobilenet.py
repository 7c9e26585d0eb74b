"""MobileNetV1 (Howard et al. 2017, arXiv 1704.04861) in convbench's IR.

conv3x3 s2 to 32 + BN + ReLU; 13 depthwise-separable blocks (see :data:`MOBILENET_V1_BLOCKS`);
global average pool; fully connected classifier with bias. Every channel count is
``int(c * width)``; convs have no bias (BN follows every conv).

Reference figures for width 1.0 at 224x224, 1000 classes: 4,231,976 trainable parameters
(Keras ``MobileNet(alpha=1.0)``: 4,253,864 total minus 21,888 non-trainable BN moving
statistics; its 1x1-conv classifier with bias equals our FC) and 569 million
multiply-adds (Table 1 of the paper reports 569 M "Mult-Adds"; we count conv and FC
multiply-adds exactly, see :mod:`convbench.graph`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import WorkloadKind, register
from convbench.workloads.layers import separable_block

#: (output channels, stride) of MobileNetV1's depthwise-separable blocks at width 1.0.
MOBILENET_V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip


class MobileNetV1Params(BaseModel):
    """Width multiplier, input resolution and number of classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: float = Field(1.0, gt=0, le=4)
    resolution: int = Field(224, ge=32)
    classes: int = Field(1000, ge=1)


def mobilenet_v1_depthwise_layers(width: float = 1.0, resolution: int = 224) -> list[dict]:
    """Parameters of the 13 depthwise convs of MobileNetV1 (channels, input size, stride)."""
    layers = []
    c, size = int(32 * width), (resolution + 1) // 2
    for out, stride in MOBILENET_V1_BLOCKS:
        layers.append({"channels": c, "size": size, "kernel": 3, "stride": stride})
        size = (size - 1) // stride + 1
        c = int(out * width)
    return layers


def build_mobilenet_v1(p: MobileNetV1Params, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, 3, p.resolution, p.resolution))
    y = b.conv2d(x, int(32 * p.width), 3, stride=2, name="conv1")
    y = b.act(b.batchnorm(y, name="conv1.bn"), "relu")
    for i, (out, stride) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        y = separable_block(b, y, int(out * p.width), stride, prefix=f"block{i}.")
    y = b.add("flatten", [b.add("global_avgpool", [y], name="pool")], name="flatten")
    return b.build([b.linear(y, p.classes, name="fc")])


register(
    WorkloadKind(
        "mobilenet_v1", MobileNetV1Params, build_mobilenet_v1, "MobileNetV1 (width, resolution)", "network"
    )
)
