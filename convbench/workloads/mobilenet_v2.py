"""MobileNetV2 (Sandler et al. 2018, arXiv 1801.04381) in convbench's IR.

conv3x3 s2 to 32 + BN + ReLU6; inverted residual blocks from the (t, c, n, s) table
:data:`MOBILENET_V2_BLOCKS`: 1x1 expansion to t * C_in + BN + ReLU6 (absent when t = 1),
dw3x3 (stride s in a stage's first block) + BN + ReLU6, 1x1 projection + BN (linear),
plus the input when the stride is 1 and C_in = C_out; conv1x1 to 1280 + BN + ReLU6;
global average pool; FC with bias (dropout is not part of the computation). Convs have
no bias. Channel counts follow torchvision's ``_make_divisible``: a width multiplier a
makes every count ``make_divisible(c * a, 8)``, and the last conv has
``make_divisible(1280 * max(1, a), 8)`` channels.

Published figures (224 x 224, 1000 classes; :data:`CONFIGS`): torchvision's exact
parameter count, 3,504,872 (conv and FC weights, FC bias, BN scale and shift: our
convention), and 0.301 G multiply-adds (torchvision; 300 M in the paper's Table 4 and
TF-slim); ours are 3,504,872 and 300.8 M (convs and FC).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, Published, WorkloadKind, register

#: (expansion t, output channels c, repeats n, first stride s) of MobileNetV2 at width 1.0.
MOBILENET_V2_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)  # fmt: skip


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's rounding: the nearest multiple of ``divisor`` (at least ``divisor``),
    raised by one ``divisor`` if that loses more than 10% of ``value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class MobileNetV2Params(BaseModel):
    """Width multiplier, input resolution and number of classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: float = Field(1.0, gt=0, le=4)
    resolution: int = Field(224, ge=32)
    classes: int = Field(1000, ge=1)


def inverted_residual(
    b: GraphBuilder, x: str, out: int, stride: int, expansion: int, prefix: str, eca_kernel: int | None = None
) -> str:
    """MobileNetV2's block: [pw + BN + ReLU6], dw + BN + ReLU6, pw-linear + BN, [ECA], [+ x].
    With ``eca_kernel``, ECA (``<prefix>eca``) follows the projection's BN, inside the
    residual branch, as in ECA-MobileNetV2 (:mod:`convbench.workloads.eca`)."""
    c_in = b.shape(x)[1]
    hidden = int(round(c_in * expansion))
    y = x
    if expansion != 1:
        y = b.act(
            b.batchnorm(b.conv2d(y, hidden, 1, name=f"{prefix}expand"), name=f"{prefix}expand.bn"),
            "relu6",
        )
    y = b.conv2d(y, hidden, 3, stride=stride, groups=hidden, name=f"{prefix}dw")
    y = b.act(b.batchnorm(y, name=f"{prefix}dw.bn"), "relu6")
    y = b.batchnorm(b.conv2d(y, out, 1, name=f"{prefix}project"), name=f"{prefix}project.bn")
    if eca_kernel is not None:
        y = b.eca(y, eca_kernel, name=f"{prefix}eca")
    if stride == 1 and c_in == out:
        y = b.add("add", [y, x], name=f"{prefix}residual")
    return y


def build_mobilenet_v2(
    p: MobileNetV2Params, batch: int, eca_kernel: Callable[[int], int] | None = None
) -> Graph:
    """MobileNetV2; with ``eca_kernel`` (a stage's table channels c -> kernel), ECA in
    every block (ECA-MobileNetV2, :mod:`convbench.workloads.eca`)."""
    b = GraphBuilder()
    x = b.input("x", (batch, 3, p.resolution, p.resolution))
    y = b.conv2d(x, make_divisible(32 * p.width), 3, stride=2, name="conv1")
    y = b.act(b.batchnorm(y, name="conv1.bn"), "relu6")
    index = 0
    for t, c, n, s in MOBILENET_V2_BLOCKS:
        for i in range(n):
            index += 1
            y = inverted_residual(
                b, y, make_divisible(c * p.width), s if i == 0 else 1, t, f"block{index}.",
                None if eca_kernel is None else eca_kernel(c),
            )
    y = b.conv2d(y, make_divisible(1280 * max(1.0, p.width)), 1, name="conv_last")
    y = b.act(b.batchnorm(y, name="conv_last.bn"), "relu6")
    y = b.add("flatten", [b.add("global_avgpool", [y], name="pool")], name="flatten")
    return b.build([b.linear(y, p.classes, name="fc")])


CONFIGS = (
    NamedConfig(
        "1.0", {"width": 1.0},
        Published(
            "torchvision mobilenet_v2 IMAGENET1K_V1: num_params 3504872, 0.301 GFLOPS (_ops)",
            params=3_504_872, macs="0.301 G",
            note="Sandler et al. 2018 (arXiv 1801.04381) Table 4 and TF-slim print 300 M multiply-adds "
            "(truncated), and 3.4 M and 3.47 M parameters under their own counting",
        ),
    ),
    NamedConfig(
        "1.4", {"width": 1.4},
        Published(
            "TF-slim mobilenet_v2_1.4_224 (tensorflow/models research/slim/nets/mobilenet README): 582 M MACs",
            macs="582 M",
            note="the paper (Table 4) prints 585 M and 6.9 M parameters for 1.4; TF-slim prints 6.06 M "
            "parameters under the counting that gives 3.47 M for 1.0, where torchvision's exact count "
            "(which we reproduce) is 3,504,872; no exact count of 1.4 is published",
        ),
    ),
)  # fmt: skip

register(
    WorkloadKind(
        "mobilenet_v2",
        MobileNetV2Params,
        build_mobilenet_v2,
        "MobileNetV2 (width, resolution)",
        "network",
        configs=CONFIGS,
        published=CONFIGS[0].published,
    )  # fmt: skip
)
