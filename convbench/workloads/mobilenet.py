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
from convbench.workloads import NamedConfig, Published, WorkloadKind, register
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


#: Exact trainable parameters per width: Keras ``MobileNet(alpha=1.0)`` (4,253,864 minus
#: 21,888 non-trainable) and osmr/imgclsmob mobilenet_w1, w3d4, wd2, wd4.
PARAMS = {1.0: 4_231_976, 0.75: 2_585_560, 0.5: 1_331_592, 0.25: 470_072}
PAPER = "Howard et al. 2017 (arXiv 1704.04861) Table 6/7: {m} M Mult-Adds"
SLIM = "TF-slim mobilenet_v1.md, MobileNet_v1_{w}_{r}: {m} M MACs"
ZOO = "imgclsmob/Keras: {n:,} trainable parameters"
#: (width, resolution) -> (source of the MACs figure, figure in millions) or None where no
#: figure agrees: TF-slim's table prints 317/233/162/104 M for 0.75 (the paper: 325 M at
#: 224) and 34 M for 0.25 at 192, figures that no network with these channels has.
MACS: dict[tuple[float, int], tuple[str, int] | None] = {
    (1.0, 224): (PAPER, 569), (1.0, 192): (PAPER, 418), (1.0, 160): (SLIM, 291), (1.0, 128): (PAPER, 186),
    (0.75, 224): (PAPER, 325), (0.75, 192): None, (0.75, 160): None, (0.75, 128): None,
    (0.5, 224): (PAPER, 149), (0.5, 192): (SLIM, 110), (0.5, 160): (SLIM, 77), (0.5, 128): (SLIM, 49),
    (0.25, 224): (PAPER, 41), (0.25, 192): None, (0.25, 160): (SLIM, 21), (0.25, 128): (SLIM, 14),
}  # fmt: skip


def _config(width: float, resolution: int) -> NamedConfig:
    n, macs = PARAMS[width], MACS[(width, resolution)]
    sources = [ZOO.format(n=n)]
    if macs:
        sources.insert(0, macs[0].format(m=macs[1], w=f"{width:.2f}".rstrip("0").rstrip(".") if width != 1.0 else "1.0", r=resolution))
    note = "the paper prints 290 M for 1.0 at 160" if (width, resolution) == (1.0, 160) else ""
    if not macs:
        note = "no published MACs figure agrees with this width's channel counts (see MACS)"
    return NamedConfig(
        f"{width}-{resolution}", {"width": width, "resolution": resolution},
        Published("; ".join(sources), params=n, macs=f"{macs[1]} M" if macs else None, note=note),
    )  # fmt: skip


CONFIGS = tuple(_config(w, r) for w in PARAMS for r in (224, 192, 160, 128))

register(
    WorkloadKind(
        "mobilenet_v1", MobileNetV1Params, build_mobilenet_v1, "MobileNetV1 (width, resolution)", "network",
        configs=CONFIGS, published=CONFIGS[0].published,
    )  # fmt: skip
)
