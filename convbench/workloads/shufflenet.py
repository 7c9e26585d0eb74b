"""ShuffleNet v1 (Zhang et al. 2017, arXiv 1707.01083) and v2 (Ma et al. 2018,
arXiv 1807.11164) in convbench's IR.

**ShuffleNet v1** (``shufflenet_v1``, ``groups`` g in 1, 2, 3, 4, 8; ``width`` s scales
every channel count to ``int(c * s)``): conv3x3 s2 to 24 + BN + ReLU, maxpool 3x3 s2;
three stages of 4, 8, 4 units with the output channels of :data:`SHUFFLENET_V1_STAGES`;
global average pool; FC with bias. A unit with input C_in and stage output C_out has
C_out // 4 bottleneck channels: 1x1 group conv to them + BN + ReLU (not grouped in the
network's very first unit), channel shuffle in g groups (when g > 1), dw3x3 + BN (stride
2 in a stage's first unit), 1x1 group conv + BN to C_out channels, or to C_out - C_in in a
stage's first unit, which concatenates a 3x3 s2 average pool of its input in front of the
branch; the other units add their input; ReLU after. The pool and the order are the
authors' released code's (megvii-model/ShuffleNet-Series, ``ShuffleNetV1/blocks.py``:
``nn.AvgPool2d(3, 2, 1)``, whose mean counts the zero padding, divisor 9 everywhere, and
``torch.cat((branch_proj(x), relu(x_main)))``); the pool is written as a ``pad`` and an
unpadded ``avgpool`` (the IR's avgpool leaves padding out of the mean).
``shortcut="excluded"`` gives convbench's earlier reading, the padding excluded from the
mean and the pool concatenated after the branch (different outputs: the border means
and the channel order; the same parameters and multiply-adds). The released code's
channel shuffle (reshape to (N, C/g, g, H, W), swap) is the inverse permutation of the
paper's (reshape to (N, g, C/g, H, W), swap), which convbench keeps: a relabelling of the
channels the next group conv reads, of the same cost.

**ShuffleNet v2** (``shufflenet_v2``, width 0.5, 1.0, 1.5, 2.0), as torchvision builds it:
conv3x3 s2 to 24 + BN + ReLU, maxpool 3x3 s2; stages of 4, 8, 4 units with the channels
of :data:`SHUFFLENET_V2_STAGES`; conv1x1 to 1024 (2048 at 2.0x) + BN + ReLU; global average
pool; FC with bias. A stride-1 unit splits its channels in two halves, keeps the first
and passes the second through 1x1 + BN + ReLU, dw3x3 + BN, 1x1 + BN + ReLU; a stage's first
unit (stride 2) feeds its whole input to that branch (strided dw) and to a second branch,
dw3x3 s2 + BN, 1x1 + BN + ReLU; each unit concatenates its two halves and shuffles the
channels in 2 groups. ``downsampling="original"`` builds the stride-2 unit as the authors'
released code does (and as the paper's MFLOPs count it): the second branch keeps all C_in
channels and the first one outputs C_out - C_in (torchvision gives both C_out / 2).

Published figures: see :data:`V1_CONFIGS` and :data:`V2_CONFIGS`. The ShuffleNet papers'
"FLOPs" are multiply-adds of convs and FC (our convention).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, Published, WorkloadKind, register
from convbench.workloads.layers import _Params
from convbench.workloads.shuffle import channel_shuffle, channel_split

#: Stage output channels of ShuffleNet v1 1x per number of groups (paper Table 1).
SHUFFLENET_V1_STAGES: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536),
}  # fmt: skip
#: Units per stage (v1 and v2).
STAGE_UNITS = (4, 8, 4)
#: ShuffleNet v2 stage channels and final conv channels per width (paper Table 5, torchvision).
SHUFFLENET_V2_STAGES: dict[str, tuple[int, int, int, int]] = {
    "0.5": (48, 96, 192, 1024), "1.0": (116, 232, 464, 1024),
    "1.5": (176, 352, 704, 1024), "2.0": (244, 488, 976, 2048),
}  # fmt: skip


def _bn_act(b: GraphBuilder, y: str, name: str, act: str | None = "relu") -> str:
    return b.act(b.batchnorm(y, name=f"{name}.bn"), act)


def stem(b: GraphBuilder, x: str, channels: int) -> str:
    """conv3x3 s2 + BN + ReLU, then maxpool 3x3 s2 (padding 1)."""
    y = _bn_act(b, b.conv2d(x, channels, 3, stride=2, name="conv1"), "conv1")
    return b.pool(y, "maxpool", 3, 2, 1)


#: How a stage's first unit pools its shortcut: ``counted`` (the authors' code: the zero
#: padding counts in the mean, the pool concatenated first) or ``excluded`` (padding left
#: out of the mean, the pool concatenated after the branch).
Shortcut = Literal["counted", "excluded"]


def downsample_shortcut(b: GraphBuilder, x: str, y: str, shortcut: Shortcut, prefix: str) -> str:
    """The concatenation of a downsampling unit's branch ``y`` with a 3x3 s2 average pool
    of its input ``x``, as ``shortcut`` says (:data:`Shortcut`)."""
    if shortcut == "counted":
        padded = b.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), name=f"{prefix}shortcut.pad")
        pool = b.add("avgpool", [padded], name=f"{prefix}shortcut", kernel=(3, 3), stride=(2, 2), padding=(0, 0))
        return b.add("concat", [pool, y], name=f"{prefix}concat", axis=1)
    pool = b.add("avgpool", [x], name=f"{prefix}shortcut", kernel=(3, 3), stride=(2, 2), padding=(1, 1))
    return b.add("concat", [y, pool], name=f"{prefix}concat", axis=1)


def shufflenet_v1_unit(
    b: GraphBuilder,
    x: str,
    out: int,
    groups: int,
    downsample: bool,
    first_grouped: bool,
    prefix: str,
    shortcut: Shortcut = "counted",
) -> str:
    """One ShuffleNet v1 unit (see the module docstring); returns its output."""
    c_in = b.shape(x)[1]
    mid = out // 4
    branch_out = out - c_in if downsample else out
    y = b.conv2d(x, mid, 1, groups=groups if first_grouped else 1, name=f"{prefix}compress")
    y = _bn_act(b, y, f"{prefix}compress")
    if groups > 1:
        y = channel_shuffle(b, y, groups, name=f"{prefix}shuffle")
    y = b.conv2d(y, mid, 3, stride=2 if downsample else 1, groups=mid, name=f"{prefix}dw")
    y = b.batchnorm(y, name=f"{prefix}dw.bn")
    y = b.batchnorm(
        b.conv2d(y, branch_out, 1, groups=groups, name=f"{prefix}expand"), name=f"{prefix}expand.bn"
    )
    if downsample:
        y = downsample_shortcut(b, x, y, shortcut, prefix)
    else:
        y = b.add("add", [y, x], name=f"{prefix}residual")
    return b.act(y, "relu")


class ShuffleNetV1Params(BaseModel):
    """Groups, width multiplier, input resolution, classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: Literal[1, 2, 3, 4, 8] = 3
    width: float = Field(1.0, gt=0, le=4)
    resolution: int = Field(224, ge=32)
    classes: int = Field(1000, ge=1)
    shortcut: Shortcut = "counted"

    @model_validator(mode="after")
    def _divisible(self) -> ShuffleNetV1Params:
        c_in = int(24 * self.width)
        for c in (int(s * self.width) for s in SHUFFLENET_V1_STAGES[self.groups]):
            if (c // 4) % self.groups or (c - c_in) % self.groups or c <= c_in:
                raise ValueError(
                    f"width {self.width} gives stage channels {c} that groups {self.groups} cannot split"
                )
            c_in = c
        return self


def build_shufflenet_v1(p: ShuffleNetV1Params, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, 3, p.resolution, p.resolution))
    y = stem(b, x, int(24 * p.width))
    for s, (units, channels) in enumerate(
        zip(STAGE_UNITS, SHUFFLENET_V1_STAGES[p.groups], strict=True), start=2
    ):
        for u in range(units):
            first_grouped = not (s == 2 and u == 0)
            y = shufflenet_v1_unit(
                b,
                y,
                int(channels * p.width),
                p.groups,
                u == 0,
                first_grouped,
                f"stage{s}.unit{u + 1}.",
                p.shortcut,
            )
    y = b.add("flatten", [b.add("global_avgpool", [y], name="pool")], name="flatten")
    return b.build([b.linear(y, p.classes, name="fc")])


class ShuffleNetV1UnitParams(_Params):
    """One ShuffleNet v1 unit on a (in_channels, size, size) input."""

    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=4)
    size: int = Field(ge=2)
    groups: int = Field(3, ge=1)
    downsample: bool = False
    shortcut: Shortcut = "counted"

    @model_validator(mode="after")
    def _fits(self) -> ShuffleNetV1UnitParams:
        branch = self.out_channels - self.in_channels if self.downsample else self.out_channels
        if not self.downsample and self.in_channels != self.out_channels:
            raise ValueError(
                "a unit without downsampling adds its input: in_channels must equal out_channels"
            )
        if (
            branch < 1
            or branch % self.groups
            or self.in_channels % self.groups
            or (self.out_channels // 4) % self.groups
        ):
            raise ValueError(
                f"groups ({self.groups}) must divide in_channels, out_channels // 4 and the branch's {branch} channels"
            )
        return self


def build_shufflenet_v1_unit(p: ShuffleNetV1UnitParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.in_channels, p.size, p.size))
    return b.build(
        [shufflenet_v1_unit(b, x, p.out_channels, p.groups, p.downsample, True, "unit.", p.shortcut)]
    )


def shufflenet_v2_unit(
    b: GraphBuilder, x: str, out: int, stride: int, prefix: str, downsampling: str = "torchvision", kernel: int = 3
) -> str:
    """One ShuffleNet v2 unit (see the module docstring); returns its output. ``kernel`` is
    the depthwise convs' (5 in ThunderNet's SNet, :mod:`convbench.workloads.thundernet`)."""
    c_in, half = b.shape(x)[1], out // 2
    keep_channels = c_in if stride > 1 and downsampling == "original" else half

    def branch(y: str, name: str, width: int) -> str:
        y = _bn_act(b, b.conv2d(y, half, 1, name=f"{name}.pw1"), f"{name}.pw1")
        y = _bn_act(
            b,
            b.conv2d(y, half, kernel, stride=stride, groups=half, name=f"{name}.dw"),
            f"{name}.dw",
            None,
        )
        return _bn_act(b, b.conv2d(y, width, 1, name=f"{name}.pw2"), f"{name}.pw2")

    if stride == 1:
        keep, rest = channel_split(b, x, 2, name=f"{prefix}split")
        parts = [keep, branch(rest, f"{prefix}branch2", half)]
    else:
        left = b.conv2d(x, c_in, kernel, stride=stride, groups=c_in, name=f"{prefix}branch1.dw")
        left = _bn_act(b, left, f"{prefix}branch1.dw", None)
        left = _bn_act(
            b, b.conv2d(left, keep_channels, 1, name=f"{prefix}branch1.pw"), f"{prefix}branch1.pw"
        )
        parts = [left, branch(x, f"{prefix}branch2", out - keep_channels)]
    y = b.add("concat", parts, name=f"{prefix}concat", axis=1)
    return channel_shuffle(b, y, 2, name=f"{prefix}shuffle")


class ShuffleNetV2Params(BaseModel):
    """Width (0.5, 1.0, 1.5 or 2.0), input resolution, classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: Literal["0.5", "1.0", "1.5", "2.0"] = "1.0"
    downsampling: Literal["torchvision", "original"] = "torchvision"
    resolution: int = Field(224, ge=32)
    classes: int = Field(1000, ge=1)

    @field_validator("width", mode="before")
    @classmethod
    def _number_as_choice(cls, value: Any) -> Any:
        """YAML reads ``width: 0.5`` as a number: take it as the choice "0.5"."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{float(value):.1f}"
        return value


def build_shufflenet_v2(p: ShuffleNetV2Params, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, 3, p.resolution, p.resolution))
    y = stem(b, x, 24)
    *stages, last = SHUFFLENET_V2_STAGES[p.width]
    for s, (units, channels) in enumerate(zip(STAGE_UNITS, stages, strict=True), start=2):
        for u in range(units):
            y = shufflenet_v2_unit(
                b, y, channels, 2 if u == 0 else 1, f"stage{s}.unit{u + 1}.", p.downsampling
            )
    y = _bn_act(b, b.conv2d(y, last, 1, name="conv5"), "conv5")
    y = b.add("flatten", [b.add("global_avgpool", [y], name="pool")], name="flatten")
    return b.build([b.linear(y, p.classes, name="fc")])


V1_SOURCE = (
    "Zhang et al. 2017 (arXiv 1707.01083) Tables 1-2, complexity {m} MFLOPs (multiply-adds of the "
    "convs; the FC is not counted); osmr/imgclsmob shufflenet_g{g}_w1: {n:,} trainable parameters"
)
V1_CONFIGS = tuple(
    NamedConfig(
        f"1x g={g}", {"groups": g},
        Published(V1_SOURCE.format(m=m, g=g, n=n), params=n, macs=f"{m} M", macs_counted="conv"),
    )
    for g, m, n in ((1, 143, 1_531_936), (2, 140, 1_733_848), (3, 137, 1_865_728), (4, 133, 1_968_344), (8, 137, 2_434_768))
)  # fmt: skip

V2_TORCHVISION = "torchvision shufflenet_v2_x{w} IMAGENET1K_V1: num_params {n}, {g} GFLOPS (_ops)"
V2_PAPER = "Ma et al. 2018 (arXiv 1807.11164) Table 5: {m} MFLOPs (multiply-adds; the paper rounds up, e.g. 40.48 M -> 41)"
V2_CONFIGS = tuple(
    NamedConfig(
        f"{w}x", {"width": w},
        Published(V2_TORCHVISION.format(w=w.replace(".", "_"), n=n, g=g), params=n, macs=f"{g} G"),
    )
    for w, g, n in (("0.5", "0.04", 1_366_792), ("1.0", "0.145", 2_278_604), ("1.5", "0.296", 3_503_624), ("2.0", "0.583", 7_393_996))
) + tuple(
    NamedConfig(
        f"{w}x original", {"width": w, "downsampling": "original"},
        Published(
            V2_PAPER.format(m=m) + (f"; {zoo}: {n:,} trainable parameters" if n else ""),
            params=n, macs=f"{m} M", macs_rounding="up",
            note="" if n else "no exact parameter count is published for this variant",
        ),
    )
    for w, m, n, zoo in (
        ("0.5", 41, 1_366_792, "torchvision shufflenet_v2_x0_5 (the two variants coincide at 0.5x)"),
        ("1.0", 146, 2_279_760, "osmr/imgclsmob shufflenetv2b_w1 and shufflenetv2c_w1 (tensorpack)"),
        ("1.5", 299, None, ""), ("2.0", 591, None, ""),
    )
)  # fmt: skip

register(
    WorkloadKind(
        "shufflenet_v1",
        ShuffleNetV1Params,
        build_shufflenet_v1,
        "ShuffleNet v1 (groups, width, resolution)",
        "network",
        configs=V1_CONFIGS,
        published=V1_CONFIGS[2].published,
    )  # fmt: skip
)
register(
    WorkloadKind(
        "shufflenet_v2",
        ShuffleNetV2Params,
        build_shufflenet_v2,
        "ShuffleNet v2 (width, resolution)",
        "network",
        configs=V2_CONFIGS,
        published=V2_CONFIGS[1].published,
    )  # fmt: skip
)
register(
    WorkloadKind(
        "shufflenet_v1_unit",
        ShuffleNetV1UnitParams,
        build_shufflenet_v1_unit,
        "one ShuffleNet v1 unit (gconv, shuffle, dw, gconv)",
    )
)
