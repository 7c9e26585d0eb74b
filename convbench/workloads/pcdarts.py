"""PC-DARTS's partial channel connection (Xu et al., ICLR 2020, "PC-DARTS: Partial Channel
Connections for Memory-Efficient Architecture Search", arXiv 1907.05737; the authors'
code, yuhuixu1993/PC-DARTS ``model_search.py`` ``MixedOp``, with the operations of DARTS,
Liu et al., arXiv 1806.09055, ``cnn/operations.py``, which PC-DARTS imports).

The layer ``pcdarts`` is one edge of a PC-DARTS search cell with one candidate op: the
input's C channels are cut into the first C / K (``k``, the authors' fixed ``k = 4``) and
the other C - C / K; the first part goes through one DARTS primitive (``op``), the rest
bypasses it; the two are concatenated (op output first) and channel-shuffled in K groups
(ShuffleNet's reshape (N, K, C / K, H, W), transpose, reshape: the authors'
``channel_shuffle``). The output has C channels. In the IR: ``slice`` x 2, the op's
``relu`` / depthwise ``conv2d`` / 1x1 ``conv2d`` / ``batchnorm`` nodes, ``concat``, then
:func:`convbench.workloads.shuffle.channel_shuffle`; no new op.

The primitives, as DARTS defines them (C' = C / K channels in and out, no biases):

* ``sep_conv_3x3`` / ``sep_conv_5x5`` (``SepConv``): (ReLU, depthwise k x k with the
  edge's stride and padding (k - 1) / 2, 1x1 conv, BN) twice, the second depthwise at
  stride 1;
* ``dil_conv_3x3`` / ``dil_conv_5x5`` (``DilConv``): ReLU, depthwise k x k with dilation 2
  and padding k - 1 (2 and 4), 1x1 conv, BN.

Stride 2 (the edges from a reduction cell's two inputs): the op runs at stride 2 and the
bypassed channels go through a 2 x 2 max pool of stride 2 (the authors' ``self.mp =
nn.MaxPool2d(2, 2)``, used when the op's output is smaller than the input), so ``size``
must be even (at an odd size the authors' concat fails: the op gives (H + 1) / 2 rows,
the pool (H - 1) / 2). K = 1 is DARTS's edge: the op on every channel, no bypass and no
shuffle.

Where convbench differs from the authors' ``MixedOp``:

* one primitive, not the softmax-weighted sum of all eight (none, max/avg pool 3x3, skip,
  the four convs) over the same C / K channels; there are no architecture weights (the
  edge normalization betas multiply the edge from outside);
* BN: the search builds its ops with ``affine=False`` (no trainable scale and shift),
  which is convbench's default too, as a batchnorm whose scale and shift are constant
  ones and zeros; ``affine: true`` gives trainable ones (DARTS's evaluation networks,
  which have no partial channels);
* nothing else: the channel order (op output first), the shuffle in K groups, the
  pool for stride 2 and the paddings are the authors'.

Counts (no figures are published for one edge; the paper gives the memory and search
cost of the whole search): with C' = C / K and the op at H_out = H / stride, a sep conv
has 2 (C' k^2 + C'^2) weights and 2 H_out W_out (C' k^2 + C'^2) multiply-adds per sample
(the second half at H_out too), a dil conv half of each; ``affine: true`` adds 2 C' per
BN. The configurations are edges of the authors' CIFAR-10 search network
(``train_search.py``: ``init_channels`` 16, 8 cells, 32 x 32 input, reduction cells 3
and 6 doubling C to 32 and 64).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, WorkloadKind, register
from convbench.workloads.layers import _Params
from convbench.workloads.shuffle import channel_shuffle

DartsOp = Literal["sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
#: op -> (separable: two ReLU-dw-pw-BN halves, kernel, dilation)
PRIMITIVES: dict[str, tuple[bool, int, int]] = {
    "sep_conv_3x3": (True, 3, 1),
    "sep_conv_5x5": (True, 5, 1),
    "dil_conv_3x3": (False, 3, 2),
    "dil_conv_5x5": (False, 5, 2),
}


class PcdartsParams(_Params):
    """One PC-DARTS edge on a (channels, size, size) input: channels / k through ``op``."""

    channels: int = Field(ge=1)
    size: int = Field(ge=1, description="input height and width")
    k: int = Field(4, ge=1, description="1 / k of the channels go through the op")
    op: DartsOp = "sep_conv_3x3"
    stride: int = Field(1, ge=1, le=2, description="2: a reduction cell's edge (the bypass max-pooled)")
    affine: bool = Field(False, description="trainable BN scale and shift (the search has none)")

    @model_validator(mode="after")
    def _fits(self) -> PcdartsParams:
        if self.channels % self.k:
            raise ValueError(f"channels ({self.channels}) must be a multiple of k ({self.k}): the shuffle has k groups")
        if self.stride == 2 and self.size % 2:
            raise ValueError(f"stride 2 needs an even size (the bypass is a 2x2 max pool), got {self.size}")
        return self


def _batchnorm(b: GraphBuilder, x: str, affine: bool, name: str) -> str:
    """BN with trainable scale and shift, or (``affine=False``, nn.BatchNorm2d(affine=False))
    with constant ones and zeros in their place."""
    if affine:
        return b.batchnorm(x, name=name)
    c = b.shape(x)[1]
    gamma = b.const(f"{name}.gamma", (c,), value=np.ones(c))
    beta = b.const(f"{name}.beta", (c,), value=np.zeros(c))
    mean = b.const(f"{name}.running_mean", (c,), init="running_mean")
    var = b.const(f"{name}.running_var", (c,), init="running_var")
    return b.add("batchnorm", [x, gamma, beta, mean, var], name=name, eps=1e-5, momentum=0.1)


def _relu_dw_pw_bn(b: GraphBuilder, x: str, kernel: int, stride: int, dilation: int, affine: bool, name: str) -> str:
    c = b.shape(x)[1]
    y = b.add("relu", [x], name=f"{name}.relu")
    y = b.conv2d(y, c, kernel, stride=stride, dilation=dilation, groups=c, name=f"{name}.dw")
    y = b.conv2d(y, c, 1, name=f"{name}.pw")
    return _batchnorm(b, y, affine, f"{name}.bn")


def darts_op(b: GraphBuilder, x: str, op: str, stride: int, affine: bool, name: str) -> str:
    """DARTS's ``SepConv`` or ``DilConv`` on ``x`` (module docstring), channels kept."""
    separable, kernel, dilation = PRIMITIVES[op]
    if not separable:
        return _relu_dw_pw_bn(b, x, kernel, stride, dilation, affine, name)
    y = _relu_dw_pw_bn(b, x, kernel, stride, 1, affine, f"{name}.1")
    return _relu_dw_pw_bn(b, y, kernel, 1, 1, affine, f"{name}.2")


def partial_channel_edge(
    b: GraphBuilder, x: str, op: str, k: int = 4, stride: int = 1, affine: bool = False, name: str = "edge"
) -> str:
    """The first C / k channels of ``x`` through ``op``, the rest bypassing (max-pooled 2x2
    at stride 2), concatenated and shuffled in k groups, as the node ``name`` (k = 1: the
    op alone, ending in its BN ``<name>.bn`` or ``<name>.2.bn``)."""
    c = b.shape(x)[1]
    part = c // k
    if k == 1:
        return darts_op(b, x, op, stride, affine, name)
    xs = b.add("slice", [x], name=f"{name}.in", axis=1, start=0, stop=part)
    y = darts_op(b, xs, op, stride, affine, f"{name}.op")
    rest = b.add("slice", [x], name=f"{name}.bypass", axis=1, start=part, stop=c)
    if stride == 2:
        rest = b.add("maxpool", [rest], name=f"{name}.bypass.pool", kernel=(2, 2), stride=(2, 2), padding=(0, 0))
    joined = b.add("concat", [y, rest], name=f"{name}.cat", axis=1)
    return channel_shuffle(b, joined, k, name=name)


def build_pcdarts(p: PcdartsParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.channels, p.size, p.size))
    return b.build([partial_channel_edge(b, x, p.op, p.k, p.stride, p.affine, name="pcdarts")])


CONFIGS = tuple(
    NamedConfig(name, params)
    for name, params in (
        ("CIFAR search, cells 1-2 (16x32, sep_conv_3x3)", {"channels": 16, "size": 32}),
        ("CIFAR search, cells 4-5 (32x16, sep_conv_5x5)", {"channels": 32, "size": 16, "op": "sep_conv_5x5"}),
        ("CIFAR search, cells 7-8 (64x8, dil_conv_3x3)", {"channels": 64, "size": 8, "op": "dil_conv_3x3"}),
        ("CIFAR search, reduction cell 3 (32x32, s2, dil_conv_5x5)", {"channels": 32, "size": 32, "op": "dil_conv_5x5", "stride": 2}),
    )
)  # fmt: skip

register(
    WorkloadKind(
        "pcdarts",
        PcdartsParams,
        build_pcdarts,
        "PC-DARTS partial channel edge (Xu et al.): 1/k of the channels through one DARTS op, the rest bypass, "
        "channel shuffle in k groups (no figures published for one edge)",
        configs=CONFIGS,
    )
)
