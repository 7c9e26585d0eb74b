"""MixNet-S and MixNet-M (Tan and Le 2019, "MixConv: Mixed Depthwise Convolutional
Kernels", BMVC 2019, arXiv 1907.09595) in convbench's IR, built from the MixConv layer
(:meth:`convbench.graph.GraphBuilder.mixconv`, :mod:`convbench.workloads.mixconv`).

Where the reading comes from, and how sure it is: the block tables below are the
authors' ``mixnet_s`` and ``mixnet_m`` in tensorflow/tpu
(``models/official/mnasnet/mixnet/mixnet_builder.py``; block strings such as
``r1_k3.5.7_a1_p1_s22_e6_i24_o40_se0.5_sw``) and the block is their ``MixnetBlock``
(``mixnet_model.py``), as timm's ``_gen_mixnet_s`` / ``_gen_mixnet_m`` also encode them.
Those two files were transcribed from memory in this session (no copy of either was at
hand). The tables were then read against one copy that was at hand, osmr/imgclsmob
``pytorch/pytorchcv/models/mixnet.py`` (commit b201a66): its per-stage channels,
expansion factors, SE factors and kernel counts of the expansion, MixConv and
projection agree with every row here, and its test asserts 4,134,606 and 5,014,382
trainable parameters, which convbench reproduces exactly. Strides and resolutions do
not change the parameter count; they agree with the paper's Fig. 4 as far as it shows
them (a stride-2 block at the first 24, 40, 80 and 200 channel rows).

Network: conv3x3 s2 to the stem width (16 for S, 24 for M) + BN + ReLU; the blocks of
:data:`MIXNET_S_BLOCKS` / :data:`MIXNET_M_BLOCKS`; conv1x1 to 1536 + BN + ReLU; global
average pool; FC with bias (dropout is not part of the computation). A block with input
C_in, expansion e, output C_out is:

* expansion (when e != 1): a 1x1 conv to e * C_in split into ``a`` groups (the authors'
  ``GroupedConv2D`` with ``expand_ksize`` [1] * a: the input and output channels split
  by ``_split_channels``, one conv per group, concatenated), here one ``conv2d`` with
  ``groups = a`` (every split of S and M is even, so the two agree) + BN + act;
* the MixConv (kernels k_1 ... k_g, the block's stride) + BN + act;
* squeeze-and-excite where ``se`` is given: global average pool, 1x1 conv with bias to
  ``max(1, int(C_in * se))`` channels (the ratio applies to the block's *input*
  channels, as in ``MixnetBlock``), act, 1x1 conv with bias back to e * C_in, sigmoid,
  channel-wise ``mul``;
* projection: a 1x1 conv to C_out in ``p`` groups (``project_ksize``) + BN, no act;
* the input added when the stride is 1 and C_in = C_out.

``act`` is ReLU in the first stages and swish (x * sigmoid(x), the ``_sw`` flag) from the
first 40-channel stage on, also inside SE. Swish is built from existing ops (``sigmoid``
and ``mul``), so no new op is needed. Convs have no bias (SE's convs have one); BN uses the
authors' epsilon 1e-3 and momentum 0.99 (PyTorch's 0.01).

Differences from the reference code, stated: the MixConv's symmetric padding (TensorFlow
pads 'same', asymmetric at stride 2, so stride-2 outputs read windows one pixel apart; same
shapes and counts: :mod:`convbench.workloads.mixconv`); no depth multiplier (MixNet-L, M at
1.3, is not modelled).

Counts (224 x 224, 1000 classes, convbench's convention: conv and FC weights and biases,
BN scale and shift; multiply-adds of every conv, SE's included, and the FC):

* parameters: MixNet-S 4,134,606, MixNet-M 5,014,382, osmr/imgclsmob's exact counts
  (its README and test); the paper (Table 2) prints 4.1 M and 5.0 M, timm 4.13 M and
  5.01 M;
* multiply-adds: MixNet-S 239.17 M, MixNet-M 339.17 M, where the paper prints 256 M and
  360 M "FLOPS" (multiply-adds in the MnasNet / EfficientNet papers' sense) and
  osmr/imgclsmob 260.26 M and 366.05 M (its counter also counts BN, activations and
  pooling). The paper's figures are reproduced (256.00 M, nearest; 360.75 M, truncated)
  by adding one operation per output element of every batch norm, ReLU, sigmoid, add and
  mul (swish and SE's scaling included) to the conv and FC multiply-adds. That is a
  hypothesis that fits both figures, not a documented convention of the authors'
  counter (tf.profiler in their code was not read); so the published MACs are not a
  checked :class:`~convbench.workloads.Published` figure, and ``tests/test_networks.py``
  checks the hypothesis itself.

Verification (``convbench check`` by hand, MixNet-S and -M at 32 x 32, 10 classes, batch
2, native and diagonalwise): inference agrees with the float64 reference to 2e-6 - 7e-6
in torch, onnxruntime, mxnet, jax and tensorflow. Training does not pass the
per-tensor relative check (0.13 - 2.7 in float32): the gradients of the projection BNs'
shifts whose output feeds only a 1x1 conv and a training-mode BN (block 1 into block 2,
and every residual stage's) are exactly zero (a per-channel shift is removed by the
next BN's batch mean), so both sides compute rounding noise, and behind them float32
training of the whole network is as ill-conditioned as ECA-MobileNetV2's
(:mod:`convbench.workloads.eca`). The torch lowering in float64 agrees with the
reference on every gradient to 2e-16 of the largest one; the 16 tensors whose relative
error is above 1e-8 are those BN shifts, whose gradients are 1.7e-16 of the largest.
MixNet is not in ``tests/test_conformance.py``; its layers (``mixconv``) are.
"""


from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, Published, WorkloadKind, register


@dataclass(frozen=True)
class MixBlock:
    """One row of a MixNet table: ``repeats`` blocks (the first with ``stride``)."""

    repeats: int
    kernels: tuple[int, ...]
    expand_groups: int  #: ``a``: groups of the 1x1 expansion
    project_groups: int  #: ``p``: groups of the 1x1 projection
    stride: int
    expansion: int
    out: int
    se: float | None
    swish: bool


def _row(text: str) -> MixBlock:
    """A block string of the authors' builder, e.g. ``r3_k3.5_a1.1_p1.1_s11_e6_o40_se0.5_sw``
    (the ``i`` field, input channels, follows from the previous row and is not kept)."""
    fields: dict[str, str] = {}
    for f in text.split("_"):
        key = f if f == "sw" else "se" if f.startswith("se") else f[0]
        fields[key] = f[len(key) :] if key != "sw" else ""
    return MixBlock(
        repeats=int(fields["r"]),
        kernels=tuple(int(k) for k in fields["k"].split(".")),
        expand_groups=len(fields["a"].split(".")),
        project_groups=len(fields["p"].split(".")),
        stride=int(fields["s"][0]),
        expansion=int(fields["e"]),
        out=int(fields["o"]),
        se=float(fields["se"]) if "se" in fields else None,
        swish="sw" in fields,
    )


#: MixNet-S (tensorflow/tpu ``mixnet_builder.mixnet_s``; stem 16, head 1536).
MIXNET_S_BLOCKS: tuple[MixBlock, ...] = tuple(
    _row(t)
    for t in (
        "r1_k3_a1_p1_s11_e1_o16",
        "r1_k3_a1.1_p1.1_s22_e6_o24",
        "r1_k3_a1.1_p1.1_s11_e3_o24",
        "r1_k3.5.7_a1_p1_s22_e6_o40_se0.5_sw",
        "r3_k3.5_a1.1_p1.1_s11_e6_o40_se0.5_sw",
        "r1_k3.5.7_a1_p1.1_s22_e6_o80_se0.25_sw",
        "r2_k3.5_a1_p1.1_s11_e6_o80_se0.25_sw",
        "r1_k3.5.7_a1.1_p1.1_s11_e6_o120_se0.5_sw",
        "r2_k3.5.7.9_a1.1_p1.1_s11_e3_o120_se0.5_sw",
        "r1_k3.5.7.9.11_a1_p1_s22_e6_o200_se0.5_sw",
        "r2_k3.5.7.9_a1_p1.1_s11_e6_o200_se0.5_sw",
    )
)

#: MixNet-M (tensorflow/tpu ``mixnet_builder.mixnet_m``; stem 24, head 1536).
MIXNET_M_BLOCKS: tuple[MixBlock, ...] = tuple(
    _row(t)
    for t in (
        "r1_k3_a1_p1_s11_e1_o24",
        "r1_k3.5.7_a1.1_p1.1_s22_e6_o32",
        "r1_k3_a1.1_p1.1_s11_e3_o32",
        "r1_k3.5.7.9_a1_p1_s22_e6_o40_se0.5_sw",
        "r3_k3.5_a1.1_p1.1_s11_e6_o40_se0.5_sw",
        "r1_k3.5.7_a1_p1_s22_e6_o80_se0.25_sw",
        "r3_k3.5.7.9_a1.1_p1.1_s11_e6_o80_se0.25_sw",
        "r1_k3_a1_p1_s11_e6_o120_se0.5_sw",
        "r3_k3.5.7.9_a1.1_p1.1_s11_e3_o120_se0.5_sw",
        "r1_k3.5.7.9_a1_p1_s22_e6_o200_se0.5_sw",
        "r3_k3.5.7.9_a1_p1.1_s11_e6_o200_se0.5_sw",
    )
)

VARIANTS: dict[str, tuple[int, tuple[MixBlock, ...]]] = {"s": (16, MIXNET_S_BLOCKS), "m": (24, MIXNET_M_BLOCKS)}
HEAD_CHANNELS = 1536
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


class MixNetParams(BaseModel):
    """Which MixNet (``s`` or ``m``), input resolution and number of classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str = Field("s", pattern="^[sm]$")
    resolution: int = Field(224, ge=32)
    classes: int = Field(1000, ge=1)


def _bn(b: GraphBuilder, y: str, name: str) -> str:
    return b.batchnorm(y, eps=BN_EPS, momentum=BN_MOMENTUM, name=f"{name}.bn")


def _act(b: GraphBuilder, y: str, swish: bool) -> str:
    """ReLU, or swish as ``mul(y, sigmoid(y))``."""
    if not swish:
        return b.act(y, "relu")
    return b.add("mul", [y, b.act(y, "sigmoid")], name=b.unique(f"{y}.swish"))


def squeeze_excite(b: GraphBuilder, x: str, reduced: int, swish: bool, prefix: str) -> str:
    """MixNet's SE: pool, 1x1 conv (bias) to ``reduced``, act, 1x1 conv (bias) back, sigmoid, scale."""
    c = b.shape(x)[1]
    s = b.add("global_avgpool", [x], name=f"{prefix}pool")
    s = _act(b, b.conv2d(s, reduced, 1, bias=True, name=f"{prefix}reduce"), swish)
    gate = b.act(b.conv2d(s, c, 1, bias=True, name=f"{prefix}expand"), "sigmoid")
    return b.add("mul", [x, gate], name=f"{prefix}scale")


def mixnet_block(b: GraphBuilder, x: str, blk: MixBlock, stride: int, prefix: str) -> str:
    """One MixNet block (module docstring)."""
    c_in = b.shape(x)[1]
    hidden = c_in * blk.expansion
    y = x
    if blk.expansion != 1:
        y = b.conv2d(y, hidden, 1, groups=blk.expand_groups, name=f"{prefix}expand")
        y = _act(b, _bn(b, y, f"{prefix}expand"), blk.swish)
    y = b.mixconv(y, blk.kernels, stride=stride, name=f"{prefix}mixconv")
    y = _act(b, _bn(b, y, f"{prefix}mixconv"), blk.swish)
    if blk.se is not None:
        y = squeeze_excite(b, y, max(1, int(c_in * blk.se)), blk.swish, f"{prefix}se.")
    y = _bn(b, b.conv2d(y, blk.out, 1, groups=blk.project_groups, name=f"{prefix}project"), f"{prefix}project")
    if stride == 1 and c_in == blk.out:
        y = b.add("add", [y, x], name=f"{prefix}residual")
    return y


def build_mixnet(p: MixNetParams, batch: int) -> Graph:
    stem, blocks = VARIANTS[p.variant]
    b = GraphBuilder()
    x = b.input("x", (batch, 3, p.resolution, p.resolution))
    y = _act(b, _bn(b, b.conv2d(x, stem, 3, stride=2, name="stem"), "stem"), False)
    index = 0
    for blk in blocks:
        for i in range(blk.repeats):
            index += 1
            y = mixnet_block(b, y, blk, blk.stride if i == 0 else 1, f"block{index}.")
    y = _act(b, _bn(b, b.conv2d(y, HEAD_CHANNELS, 1, name="head"), "head"), False)
    y = b.add("flatten", [b.add("global_avgpool", [y], name="pool")], name="flatten")
    return b.build([b.linear(y, p.classes, name="fc")])


_PAPER = "Tan and Le 2019 (arXiv 1907.09595) Table 2: 4.1 M / 5.0 M parameters, 256 M / 360 M FLOPS"
_MACS_NOTE = (
    "the paper's FLOPS ({}) are conv+fc multiply-adds plus one operation per output element of "
    "every BN, activation, add and mul (a fitting hypothesis, module docstring); convbench's MACs "
    "are conv+fc only"
)
CONFIGS = (
    NamedConfig(
        "MixNet-S", {"variant": "s"},
        Published(
            f"osmr/imgclsmob pytorchcv mixnet_s: 4,134,606 parameters; {_PAPER}",
            params=4_134_606, note=_MACS_NOTE.format("256 M"),
        ),
    ),
    NamedConfig(
        "MixNet-M", {"variant": "m"},
        Published(
            f"osmr/imgclsmob pytorchcv mixnet_m: 5,014,382 parameters; {_PAPER}",
            params=5_014_382, note=_MACS_NOTE.format("360 M"),
        ),
    ),
)  # fmt: skip

register(
    WorkloadKind(
        "mixnet",
        MixNetParams,
        build_mixnet,
        "MixNet-S / MixNet-M (Tan and Le): MixConv inverted residuals with SE and swish",
        "network",
        configs=CONFIGS,
    )
)
