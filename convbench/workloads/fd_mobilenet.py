"""FD-MobileNet (Qin et al. 2018, "FD-MobileNet: Improved MobileNet with a Fast
Downsampling Strategy", arXiv 1802.03750) in convbench's IR.

MobileNetV1's depthwise-separable blocks (dw3x3 + BN + ReLU, pw1x1 + BN + ReLU), but
downsampling 32x within the first 12 layers: conv3x3 s2 to 32 + BN + ReLU; blocks with
(output channels, stride) :data:`FD_MOBILENET_BLOCKS`; global average pool; FC with bias.
A width multiplier a makes every channel count ``int(c * a)``.

Published figures: see :data:`CONFIGS`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, Published, WorkloadKind, register
from convbench.workloads.layers import separable_block

#: (output channels, stride) of FD-MobileNet's blocks at width 1.0 (paper Table 1).
FD_MOBILENET_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 2), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (1024, 1),
)  # fmt: skip


class FDMobileNetParams(BaseModel):
    """Width multiplier, input resolution and number of classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: float = Field(1.0, gt=0, le=4)
    resolution: int = Field(224, ge=32)
    classes: int = Field(1000, ge=1)


def build_fd_mobilenet(p: FDMobileNetParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, 3, p.resolution, p.resolution))
    y = b.conv2d(x, int(32 * p.width), 3, stride=2, name="conv1")
    y = b.act(b.batchnorm(y, name="conv1.bn"), "relu")
    for i, (out, stride) in enumerate(FD_MOBILENET_BLOCKS, start=1):
        y = separable_block(b, y, int(out * p.width), stride, prefix=f"block{i}.")
    y = b.add("flatten", [b.add("global_avgpool", [y], name="pool")], name="flatten")
    return b.build([b.linear(y, p.classes, name="fc")])


SOURCE = (
    "Qin et al. 2018 (arXiv 1802.03750): complexity {m} MFLOPs (multiply-adds); "
    "osmr/imgclsmob fdmobilenet_{zoo}: {n:,} trainable parameters"
)
CONFIGS = tuple(
    NamedConfig(f"{w}x", {"width": w}, Published(SOURCE.format(m=m, zoo=z, n=n), params=n, macs=f"{m} M"))
    for w, z, m, n in ((1.0, "w1", 144, 2_901_288), (0.5, "wd2", 40, 993_928), (0.25, "wd4", 12, 383_160))
)  # fmt: skip

register(
    WorkloadKind(
        "fd_mobilenet",
        FDMobileNetParams,
        build_fd_mobilenet,
        "FD-MobileNet (width, resolution)",
        "network",
        configs=CONFIGS,
        published=CONFIGS[0].published,
    )  # fmt: skip
)
