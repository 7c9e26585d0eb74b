"""ThunderNet's SNet backbones (Qin et al., ICCV 2019, "ThunderNet: Towards Real-time
Generic Object Detection on Mobile Devices", arXiv 1903.11752): SNet49, SNet146 and
SNet535, ShuffleNetV2 with every 3x3 depthwise conv replaced by a 5x5 one, as ImageNet
classifiers (how the paper counts their FLOPs).

Where the reading comes from: the paper's Table 1 as this session recalls it (the paper
was not at hand): conv1 3x3 s2 to 24 channels (48 for SNet535) + BN + ReLU, maxpool 3x3
s2, three stages of 4, 8 and 4 ShuffleNetV2 units (the first of each with stride 2) with
60 / 120 / 240 (SNet49), 132 / 264 / 528 (SNet146) and 248 / 496 / 992 (SNet535) output
channels, then conv5 1x1 to 512 + BN + ReLU in SNet49 only ("SNet146 and SNet535 remove
conv5 and add channels in early stages"), global average pool, FC to 1000. SNet146's
channels and the absence of its conv5 agree with third-party PyTorch ports found in this
session (a ``stage_out_channels = [-1, 24, 132, 264, 528]`` ShuffleNetV2 with 5x5
depthwise convs and no conv5; the authors released no code). The unit is convbench's
ShuffleNetV2 unit (:func:`convbench.workloads.shufflenet.shufflenet_v2_unit`, torchvision's
downsampling: both branches of a stride-2 unit give half the output channels) with
``kernel=5``. The detection-side modules (CEM, SAM, the RPN and PSRoI head) are not
modelled: CEM needs an upsampling op and a broadcast add the IR does not have.

Counts (224 x 224, 1000 classes; parameters conv/FC weights and biases, BN scale and
shift; multiply-adds conv + FC), against the paper's 49 / 146 / 535 MFLOPs
(multiply-adds of convs and FC, as in the ShuffleNetV2 paper, whose 146 M for
ShuffleNetV2 1x convbench reproduces: ``shufflenet_v2`` 1.0x original, rounded up):

* SNet535: 535.35 M, which rounds to the paper's 535 M (checked, :data:`CONFIGS`);
* SNet49: 51.21 M, 4.5% above 49 M; SNet146: 161.14 M, 10.4% above 146 M. Neither gap is
  explained: 3x3 depthwise convs would give 47.24 M and 152.76 M, the released-code
  ("original") downsampling 51.23 M and 162.52 M, and no reading of the table tried here
  gives both figures. The paper publishes no parameter counts. These two MAC figures are
  notes, not checked figures; the tests pin convbench's own counts.

Verification (``convbench check`` by hand, SNet49 and SNet146 at 64 x 64, 10 classes,
batch 4, native and diagonalwise, one thread): torch, onnxruntime, mxnet, jax and
tensorflow agree with the float64 reference to 5e-7 - 9e-7 in inference and 3e-5 - 1e-4
in training (SNet146 in torch: 1.5e-2, within the networks suite's float32 tolerance
0.05; onnxruntime runs inference only). SNet is not in ``tests/test_conformance.py``; its
ops are those of ShuffleNetV2, which is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, Published, WorkloadKind, register
from convbench.workloads.shufflenet import STAGE_UNITS, _bn_act, shufflenet_v2_unit, stem

#: conv1 channels, stage output channels and conv5 channels (0: none) per SNet.
SNET: dict[str, tuple[int, tuple[int, int, int], int]] = {
    "49": (24, (60, 120, 240), 512),
    "146": (24, (132, 264, 528), 0),
    "535": (48, (248, 496, 992), 0),
}
DEPTHWISE_KERNEL = 5


class SNetParams(BaseModel):
    """Which SNet (49, 146 or 535), input resolution and number of classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: Literal["49", "146", "535"] = "146"
    resolution: int = Field(224, ge=32)
    classes: int = Field(1000, ge=1)


def build_snet(p: SNetParams, batch: int) -> Graph:
    conv1, stages, conv5 = SNET[p.variant]
    b = GraphBuilder()
    x = b.input("x", (batch, 3, p.resolution, p.resolution))
    y = stem(b, x, conv1)
    for s, (units, channels) in enumerate(zip(STAGE_UNITS, stages, strict=True), start=2):
        for u in range(units):
            y = shufflenet_v2_unit(
                b, y, channels, 2 if u == 0 else 1, f"stage{s}.unit{u + 1}.", kernel=DEPTHWISE_KERNEL
            )
    if conv5:
        y = _bn_act(b, b.conv2d(y, conv5, 1, name="conv5"), "conv5")
    y = b.add("flatten", [b.add("global_avgpool", [y], name="pool")], name="flatten")
    return b.build([b.linear(y, p.classes, name="fc")])


_PAPER = "Qin et al. 2019 (arXiv 1903.11752) Table 1: {} MFLOPs (multiply-adds) at 224 x 224"
CONFIGS = (
    NamedConfig(
        "SNet49", {"variant": "49"},
        Published(_PAPER.format(49), note="not checked: convbench counts 51.21 M (4.5% more), unexplained; no parameter count published"),
    ),
    NamedConfig(
        "SNet146", {"variant": "146"},
        Published(_PAPER.format(146), note="not checked: convbench counts 161.14 M (10.4% more), unexplained; no parameter count published"),
    ),
    NamedConfig(
        "SNet535", {"variant": "535"},
        Published(_PAPER.format(535), macs="535 M", note="no parameter count published"),
    ),
)  # fmt: skip

register(
    WorkloadKind(
        "snet",
        SNetParams,
        build_snet,
        "ThunderNet's SNet49/146/535: ShuffleNetV2 units with 5x5 depthwise convs",
        "network",
        configs=CONFIGS,
    )
)
