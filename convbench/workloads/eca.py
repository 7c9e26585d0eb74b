"""ECA, efficient channel attention (Wang et al., CVPR 2020, "ECA-Net: Efficient Channel
Attention for Deep Convolutional Neural Networks", arXiv 1910.03151), and ECA-MobileNetV2.

The layer is the authors' ``eca_layer`` (BangguWu/ECANet, ``models/eca_module.py``): a
global average pool to (N, C, 1, 1), a 1-D conv of odd kernel k across the channels (one
filter, no bias, padding (k - 1) / 2), a sigmoid, and ``x * y`` broadcast over H and W. In
the IR it is :meth:`convbench.graph.GraphBuilder.eca` (``global_avgpool``, ``reshape``
to (N, 1, C, 1), a (k, 1) ``conv2d``, ``reshape``, ``sigmoid``, ``mul``): no new op.

Kernel rules, both modelled:

* ``adaptive`` (the paper, Sec. 3.3, Eq. 12): ``k = |log2(C) / gamma + b / gamma|_odd``
  with gamma = 2, b = 1; as the common code computes it (e.g. timm's ``EcaModule``),
  ``t = int(|(log2(C) + b) / gamma|)`` and ``k = t if t is odd else t + 1``
  (:func:`adaptive_kernel`): C = 64 -> 3, 256 -> 5, 512 -> 5, 2048 -> 7;
* ``released`` (the authors' ECA-MobileNetV2, ``models/eca_mobilenetv2.py`` lines 77-80
  at commit a46e411 "change channel condition for kernal size", 2020-07-19, the
  repository's head): ``ksize = 1 if c < 96 else 3``, where c is the stage's channel
  count in the MobileNetV2 table before the width multiplier; the first commit
  (4329104, 2019-09-15) had ``c <= 96``, kept as ``released-2019``
  (:func:`released_kernel`). So k = 1 (a per-channel scalar gate, no cross-channel
  interaction) in the 16, 24, 32 and 64 stages, and k = 3 in the 96 (``released`` only),
  160 and 320 stages.

ECA-MobileNetV2 is convbench's MobileNetV2 (:mod:`convbench.workloads.mobilenet_v2`)
with ECA after the projection's BN of every inverted residual block, inside the residual
branch (``layers.append(eca_layer(oup, k_size))`` before ``x + self.conv(x)``).
Differences from the authors' network: none in the computation at width 1.0 (their
``int(c * width_mult)`` channel rounding differs from torchvision's ``make_divisible``
at other widths; dropout is not part of the computation).

Counts: ECA adds k parameters and N * C * k multiply-adds per layer. ECA-MobileNetV2 1.0
at 224: 3,504,872 (MobileNetV2) + 10 * 1 + 7 * 3 = 3,504,903 parameters with the
``released`` rule (3,504,897 with ``released-2019``). The authors' README prints 3.34 M
for ECA-MobileNet_v2 (and 24.37 M for ECA-Net50): their ``paras_flops.py`` counts with
thop and prints with a ``clever_format`` that divides by 1024**2 for "M", so these are
2**20 units: 3,504,903 / 2**20 = 3.343 (checked, ``units="binary"``; the ECA layers' 31
parameters do not show at that precision), and torchvision's ResNet-50 with ECA, 25.56
million, is 24.37. MACs: 300,774,272 (MobileNetV2) + 3,680 (the ECA convs, ``released``);
the README's 319.9 M FLOPs are thop's count in train mode, 2**20 units (335.4 million),
which adds batch norms, activations and pools to the convs and FC: not comparable with
convbench's conv+fc multiply-adds, so not checked.

Verification: in a whole network trained in float32 the gradient of an ECA weight (k
scalars, each a sum over N * C products behind a training-mode batch norm) is the
worst-conditioned value: torch float32 is measured 3e-4 to 0.13 (relative) from the
float64 reference on ECA-MobileNetV2 0.25x at 64 x 64, depending on the data, while torch
in float64 agrees to 1e-12 (the lowering is exact). The 0.13 is one relu6 input 8.2e-6
from its kink taken on the other side by float32 rounding; the check at kinks
(:mod:`convbench.kinks`) finds it and the case verifies within 0.0020. The layer itself
verifies at the strict tolerance in every backend.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, Published, WorkloadKind, register
from convbench.workloads.layers import _Params
from convbench.workloads.mobilenet_v2 import MobileNetV2Params, build_mobilenet_v2

KernelRule = Literal["adaptive", "released", "released-2019"]


def adaptive_kernel(channels: int, gamma: int = 2, b: int = 1) -> int:
    """The paper's adaptive kernel size, ``|log2(C) / gamma + b / gamma|_odd``."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def released_kernel(stage_channels: int, rule: KernelRule = "released") -> int:
    """The released ECA-MobileNetV2's kernel for a stage of ``stage_channels`` (table c)."""
    small = stage_channels <= 96 if rule == "released-2019" else stage_channels < 96
    return 1 if small else 3


class EcaParams(_Params):
    """ECA on a (channels, size, size) input; ``kernel`` fixed, or the adaptive rule."""

    channels: int = Field(ge=1)
    size: int = Field(ge=1, description="input height and width")
    kernel: int | None = Field(None, ge=1, description="odd 1-D kernel; none: adaptive")
    gamma: int = Field(2, ge=1, description="adaptive rule's gamma")
    b: int = Field(1, ge=0, description="adaptive rule's b")

    @model_validator(mode="after")
    def _odd(self) -> EcaParams:
        if self.kernel is not None and self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {self.kernel}")
        return self

    @property
    def k(self) -> int:
        return self.kernel if self.kernel is not None else adaptive_kernel(self.channels, self.gamma, self.b)


def build_eca(p: EcaParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.channels, p.size, p.size))
    return b.build([b.eca(x, p.k, name="eca")])


class EcaMobileNetV2Params(MobileNetV2Params):
    """MobileNetV2's parameters and the ECA kernel rule."""

    kernel_rule: KernelRule = "released"


def build_eca_mobilenet_v2(p: EcaMobileNetV2Params, batch: int) -> Graph:
    base = MobileNetV2Params(width=p.width, resolution=p.resolution, classes=p.classes)
    if p.kernel_rule == "adaptive":
        return build_mobilenet_v2(base, batch, lambda c: adaptive_kernel(max(1, round(c * p.width))))
    return build_mobilenet_v2(base, batch, lambda c: released_kernel(c, p.kernel_rule))


CONFIGS = tuple(
    NamedConfig(name, {"channels": c, "size": s, "kernel": k})
    for name, c, s, k in (
        ("ECA-MobileNetV2 stage 24 (24x56, k=1)", 24, 56, 1),
        ("ECA-MobileNetV2 stage 160 (160x7, k=3)", 160, 7, 3),
        ("ECA-ResNet50 stage 1 (256x56, adaptive k=5)", 256, 56, None),
        ("ECA-ResNet50 stage 4 (2048x7, adaptive k=7)", 2048, 7, None),
    )
)  # fmt: skip

_README = "the authors' BangguWu/ECANet README (thop via paras_flops.py, printed in 2**20 units): 3.34 M parameters"
NETWORK_CONFIGS = (
    NamedConfig(
        "1.0 released", {"width": 1.0},
        Published(_README, params="3.34 M", units="binary", note="the README's 319.9 M FLOPs count BN, activations and pools too (thop): not checked"),
    ),  # fmt: skip
    NamedConfig("1.0 released-2019", {"width": 1.0, "kernel_rule": "released-2019"}),
    NamedConfig("1.0 adaptive", {"width": 1.0, "kernel_rule": "adaptive"}),
)

register(
    WorkloadKind(
        "eca",
        EcaParams,
        build_eca,
        "ECA (Wang et al.): global pool, 1-D conv across channels, sigmoid, channel-wise scale",
        configs=CONFIGS,
    )
)
register(
    WorkloadKind(
        "eca_mobilenet_v2",
        EcaMobileNetV2Params,
        build_eca_mobilenet_v2,
        "ECA-MobileNetV2 (width, resolution, ECA kernel rule)",
        "network",
        configs=NETWORK_CONFIGS,
    )
)
