"""MENet (Qin et al. 2018, "Merging and Evolution: Improving Convolutional Neural
Networks for Mobile Applications", arXiv 1803.09127) in convbench's IR.

W-MENet-Sx1 (g=G): ShuffleNet v1's skeleton (see :mod:`convbench.workloads.shufflenet`)
with stage channels W, 2W, 4W, groups G, an initial conv of :data:`INIT_CHANNELS` [W]
channels, and in every unit a side branch of S channels. With M = C_out // 4 bottleneck
channels, a ME unit computes, after the first 1x1 group conv + BN + ReLU and the channel
shuffle (value s):

* main: dw3x3 (stride 2 in a stage's first unit) + BN on s;
* *merging*: 1x1 conv M -> S + BN + ReLU on s;
* *evolution*: 3x3 conv S -> S (the dw conv's stride, padding 1) + BN + ReLU, then 1x1
  conv S -> M + BN + sigmoid, which multiplies the main path element-wise;
* then the 1x1 group conv + BN to C_out (C_out - C_in in a stage's first unit, which
  concatenates a 3x3 s2 average pool of its input; the others add it) and ReLU.

The downsampling shortcut is ShuffleNet v1's released one
(:func:`convbench.workloads.shufflenet.downsample_shortcut`): PyTorch's default
``AvgPool2d(3, 2, 1)``, whose mean counts the zero padding, concatenated in front of the
branch (``shortcut="excluded"``: padding left out of the mean, the pool after the
branch, convbench's earlier reading). MENet's own code was not among the sources
reachable here; its paper builds on ShuffleNet v1's unit, whose released code this follows.

The network's very first 1x1 conv is not grouped; convs have no bias; global average
pool; FC with bias. Published figures: see :data:`CONFIGS`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, Published, WorkloadKind, register
from convbench.workloads.shuffle import channel_shuffle
from convbench.workloads.shufflenet import STAGE_UNITS, Shortcut, downsample_shortcut, stem

#: Initial conv channels per first-stage width W (paper Table 1).
INIT_CHANNELS: dict[int, int] = {
    108: 12,
    128: 12,
    160: 16,
    228: 24,
    256: 24,
    348: 24,
    352: 24,
    456: 48,
}


class MENetParams(BaseModel):
    """W (first stage channels), S (side channels), G (groups), initial conv channels
    (default: the paper's for W), input resolution, classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage_channels: int = Field(228, ge=4)
    side_channels: int = Field(12, ge=1)
    groups: int = Field(3, ge=1)
    init_channels: int | None = Field(None, ge=1)
    resolution: int = Field(224, ge=32)
    classes: int = Field(1000, ge=1)
    shortcut: Shortcut = "counted"

    @property
    def init(self) -> int:
        return self.init_channels or INIT_CHANNELS[self.stage_channels]

    @model_validator(mode="after")
    def _fits(self) -> MENetParams:
        if self.init_channels is None and self.stage_channels not in INIT_CHANNELS:
            raise ValueError(
                f"stage_channels {self.stage_channels} has no published initial conv width "
                f"({', '.join(map(str, INIT_CHANNELS))}); give init_channels"
            )
        c_in = self.init
        for c in (self.stage_channels * 2**i for i in range(3)):
            if (c // 4) % self.groups or (c - c_in) % self.groups or c <= c_in:
                raise ValueError(
                    f"groups {self.groups} cannot split stage channels {c} (input {c_in})"
                )
            c_in = c
        return self


def me_unit(
    b: GraphBuilder,
    x: str,
    out: int,
    side: int,
    groups: int,
    downsample: bool,
    first_grouped: bool,
    prefix: str,
    shortcut: Shortcut = "counted",
) -> str:
    """One ME unit (see the module docstring); returns its output."""
    c_in = b.shape(x)[1]
    mid = out // 4
    stride = 2 if downsample else 1
    s = b.conv2d(x, mid, 1, groups=groups if first_grouped else 1, name=f"{prefix}compress")
    s = b.act(b.batchnorm(s, name=f"{prefix}compress.bn"), "relu")
    if groups > 1:
        s = channel_shuffle(b, s, groups, name=f"{prefix}shuffle")
    main = b.batchnorm(
        b.conv2d(s, mid, 3, stride=stride, groups=mid, name=f"{prefix}dw"), name=f"{prefix}dw.bn"
    )
    side_y = b.act(
        b.batchnorm(b.conv2d(s, side, 1, name=f"{prefix}merge"), name=f"{prefix}merge.bn"), "relu"
    )
    side_y = b.conv2d(side_y, side, 3, stride=stride, name=f"{prefix}evolve")
    side_y = b.act(b.batchnorm(side_y, name=f"{prefix}evolve.bn"), "relu")
    gate = b.batchnorm(
        b.conv2d(side_y, mid, 1, name=f"{prefix}evolve_out"), name=f"{prefix}evolve_out.bn"
    )
    gate = b.act(gate, "sigmoid")
    y = b.add("mul", [main, gate], name=f"{prefix}gated")
    branch_out = out - c_in if downsample else out
    y = b.batchnorm(
        b.conv2d(y, branch_out, 1, groups=groups, name=f"{prefix}expand"), name=f"{prefix}expand.bn"
    )
    if downsample:
        y = downsample_shortcut(b, x, y, shortcut, prefix)
    else:
        y = b.add("add", [y, x], name=f"{prefix}residual")
    return b.act(y, "relu")


def build_menet(p: MENetParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, 3, p.resolution, p.resolution))
    y = stem(b, x, p.init)
    for s, units in enumerate(STAGE_UNITS, start=2):
        channels = p.stage_channels * 2 ** (s - 2)
        for u in range(units):
            first_grouped = not (s == 2 and u == 0)
            y = me_unit(
                b,
                y,
                channels,
                p.side_channels,
                p.groups,
                u == 0,
                first_grouped,
                f"stage{s}.unit{u + 1}.",
                p.shortcut,
            )
    y = b.add("flatten", [b.add("global_avgpool", [y], name="pool")], name="flatten")
    return b.build([b.linear(y, p.classes, name="fc")])


PAPER = "Qin et al. 2018 (arXiv 1803.09127) Table 2: {m} MFLOPs (multiply-adds of convs and FC; the paper truncates, e.g. 299.62 M -> 299)"
ZOO = "osmr/imgclsmob menet{w}_{s}x1_g{g}: {n:,} trainable parameters"
CONFIGS = tuple(
    NamedConfig(
        f"{w}-MENet-{s}x1 (g={g})", {"stage_channels": w, "side_channels": s, "groups": g},
        Published(
            "; ".join(([PAPER.format(m=m)] if m else []) + [ZOO.format(w=w, s=s, g=g, n=n)]),
            params=n, macs=f"{m} M" if m else None, macs_rounding="down",
            note="" if m else "MACs not checked: we could not confirm the paper's figure for this variant",
        ),
    )
    for w, s, g, m, n in (
        (108, 8, 3, 38, 654_516), (128, 8, 4, None, 750_796), (160, 8, 8, None, 850_120),
        (228, 12, 3, 144, 1_806_568), (256, 12, 4, 140, 1_888_240), (348, 12, 3, 299, 3_368_128),
        (352, 12, 8, 144, 2_272_872), (456, 24, 3, 551, 5_304_784),
    )
)  # fmt: skip

register(
    WorkloadKind(
        "menet",
        MENetParams,
        build_menet,
        "MENet W-MENet-Sx1 (g=G)",
        "network",
        configs=CONFIGS,
        published=CONFIGS[3].published,
    )  # fmt: skip
)
