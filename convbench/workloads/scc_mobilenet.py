"""DSXplore's MobileNet: MobileNetV1 for CIFAR-10 with a sliding-channel convolution (SCC)
in place of every pointwise conv (Wang et al., IPDPS 2021, arXiv 2101.00745).

Structure, as the authors' ``models/mobilenet.py`` (YukeWang96/DSXplore_IPDPS21, latest
commit) builds it: conv1 3x3 stride 1 to 32 channels (no bias) + BN + ReLU at 32 x 32;
13 blocks of the CIFAR MobileNet their code derives from (kuangliu/pytorch-cifar: output
channels 64, 128/2, 128, 256/2, 256, 512/2, 512 x 5, 1024/2, 1024; "/2": stride 2), each
a 3x3 depthwise conv *with bias* (PyTorch's default, which the authors keep) + BN + ReLU,
then an SCC to the block's output channels (G channel groups, window overlap; no bias) +
BN + ReLU; a 2x2 average pool (the whole 2 x 2 map at 32 px), flatten, and an FC with
bias to 10 classes. The SCC is convbench's ``scc`` op in the chosen form (``masked``,
``compact`` or ``gather``: :mod:`convbench.workloads.scc`).

Where convbench's reading differs from the authors' code, stated:

* ``width`` scales every channel count (``int(c * width)``, each a multiple of G); the
  authors have width 1.0 only;
* the authors' SCC module declares a bias parameter (C_out ones) it never adds, so a
  parameter count of their model includes sum(C_out) = 5,952 more numbers at width 1.0
  than it uses; convbench counts only what the network computes with;
* an earlier commit of their ``mobilenet.py`` (133317a) kept the pointwise conv and put
  an SCC from C to C before it; that commit also ignored its ``groups`` and ``overlap``
  arguments (assigned to locals, not the module globals it read: always 2 and 0.5).
  convbench follows the latest commit.

No parameter or multiply-add figure for this network was found in the paper or the
repository, so none is checked. The masked form's MACs count its dense 1x1 convs (G times
the SCC's own); the gather form's are the SCC's own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, WorkloadKind, register
from convbench.workloads.layers import depthwise_layer
from convbench.workloads.mobilenet import MOBILENET_V1_BLOCKS

#: (output channels, stride) of its 13 blocks at width 1.0: the CIFAR MobileNet's list
#: (64, 128/2, 128, 256/2, 256, 512/2, 512 x 5, 1024/2, 1024) is MobileNetV1's.
BLOCKS = MOBILENET_V1_BLOCKS


class SccMobileNetParams(BaseModel):
    """Width, channel groups and overlap of the SCCs, their form, input size and classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: float = Field(1.0, gt=0, le=4)
    groups: int = Field(2, ge=1, description="G of every SCC: windows of C_in / G channels")
    overlap: float = Field(0.5, ge=0, lt=1, description="fraction of a window shared with the next")
    form: Literal["masked", "compact", "gather"] = "masked"
    resolution: int = Field(32, ge=32, description="input height and width, a multiple of 32 (CIFAR: 32)")
    classes: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _fits(self) -> SccMobileNetParams:
        if self.resolution % 32:
            raise ValueError(f"resolution ({self.resolution}) must be a multiple of 32")
        channels = [int(32 * self.width)] + [int(c * self.width) for c, _ in BLOCKS]
        bad = sorted({c for c in channels if c < 1 or c % self.groups})
        if bad:
            raise ValueError(f"width {self.width} gives channel counts {bad} that are not multiples of groups ({self.groups})")
        return self


def build_scc_mobilenet(p: SccMobileNetParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, 3, p.resolution, p.resolution))
    y = b.conv2d(x, int(32 * p.width), 3, stride=1, name="conv1")
    y = b.act(b.batchnorm(y, name="conv1.bn"), "relu")
    for i, (out, stride) in enumerate(BLOCKS, start=1):
        y = depthwise_layer(b, y, 3, stride, bias=True, name=f"block{i}.dw")
        y = b.act(b.batchnorm(y, name=f"block{i}.dw.bn"), "relu")
        y = b.sliding_channel_conv(y, int(out * p.width), p.groups, p.overlap, form=p.form, name=f"block{i}.scc")
        y = b.act(b.batchnorm(y, name=f"block{i}.scc.bn"), "relu")
    y = b.pool(y, "avgpool", 2, 2)
    y = b.add("flatten", [y], name="flatten")
    return b.build([b.linear(y, p.classes, name="fc")])


#: The masked default (dense 1x1 convs: every G gives the same counts), then the gather
#: form, whose parameters and multiply-adds are the SCCs' own, at the authors' groups.
CONFIGS = (NamedConfig("G=2, overlap=0.5", {"groups": 2, "overlap": 0.5}),) + tuple(
    NamedConfig(f"G={g}, overlap={o}, gather", {"groups": g, "overlap": o, "form": "gather"})
    for g, o in ((1, 0.5), (2, 0.5), (4, 0.25), (4, 0.33), (8, 0.75))
)  # fmt: skip

register(
    WorkloadKind(
        "scc_mobilenet",
        SccMobileNetParams,
        build_scc_mobilenet,
        "DSXplore's CIFAR MobileNet: an SCC in place of every pointwise conv (groups, overlap, form, width)",
        "network",
        configs=CONFIGS,
    )
)
