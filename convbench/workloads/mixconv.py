"""MixConv (Tan and Le 2019, "MixConv: Mixed Depthwise Convolutional Kernels", arXiv
1907.09595): a depthwise convolution whose channels are split into groups, each with its
own kernel size (3x3, 5x5, 7x7, ...), the group outputs concatenated.

The definition is the authors' (tensorflow/tpu, ``models/official/mnasnet/mixnet/
custom_layers.py``: ``_split_channels`` and ``MixConv``): with g kernels, the C channels
form g groups of consecutive channels, floor(C / g) each with the remainder C mod g added
to the first group (:func:`convbench.graph.mixconv_splits`); group i is a depthwise conv
(multiplier 1, no bias in MixNet) with kernel k_i and the layer's stride; the outputs are
concatenated in group order. In the IR it is one composite layer,
:meth:`convbench.graph.GraphBuilder.mixconv` (``slice`` per group, depthwise ``conv2d``,
``concat``), so every backend and variant runs it through ops they already have.

Differences from the reference code, stated: convbench pads symmetrically by (k_i - 1) / 2
(as PyTorch ports such as timm's ``mixnet_*`` do); the TensorFlow code pads 'same', which
at stride 2 on an even size puts the extra row and column at the end, so the stride-2
outputs read windows one pixel apart from ours (same shapes, parameters and multiply-adds).
The reference's ``dilated`` option (a 3x3 kernel with dilation (k - 1) / 2 standing in for
a k x k one) is not modelled.

Counts: parameters sum_i c_i * k_i^2 (plus c_i per group with a bias, 2 C with BN);
multiply-adds N * H_out * W_out * sum_i c_i * k_i^2.

Named configurations: MixConv layers of MixNet-S at 224 x 224 (tensorflow/tpu
``mixnet_builder.py``, ``mixnet_s``: the depthwise stage of blocks 4, 5, 9 and 10 runs on
the expanded channels, input channels x expansion, at the resolution where the block
starts). No figure is published per layer; the counts are ours.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, WorkloadKind, register
from convbench.workloads.layers import Activation, _finish, _Params


class MixConvParams(_Params):
    """A MixConv of a (channels, size, size) input with one odd kernel per group."""

    channels: int = Field(ge=1)
    size: int = Field(ge=1, description="input height and width")
    kernels: tuple[int, ...] = Field((3, 5, 7), min_length=1, description="one odd kernel per group")
    stride: int = Field(1, ge=1)
    bias: bool = False
    bn: bool = False
    act: Activation = "none"

    @field_validator("kernels", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        """A suite gives a list (YAML, JSON), ``convbench export --param`` a string such as
        ``3,5,7`` or ``[3, 5, 7]``; the model keeps a tuple (frozen, hashable)."""
        if isinstance(value, str):
            items = value.strip().removeprefix("[").removesuffix("]").split(",")
            return tuple(int(v) if v.strip().isdigit() else v for v in items)
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _fits(self) -> MixConvParams:
        if any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be odd and positive, got {list(self.kernels)}")
        if len(self.kernels) > self.channels:
            raise ValueError(f"{len(self.kernels)} kernels need at least as many channels, got {self.channels}")
        return self


def build_mixconv(p: MixConvParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.channels, p.size, p.size))
    y = b.mixconv(x, p.kernels, stride=p.stride, bias=p.bias, name="mixconv")
    return b.build([_finish(b, y, p.bn, p.act)])


CONFIGS = tuple(
    NamedConfig(name, {"channels": c, "size": s, "kernels": k, "stride": st})
    for name, c, s, k, st in (
        ("MixNet-S block 4 (24x6, 3-5-7, s2)", 144, 56, (3, 5, 7), 2),
        ("MixNet-S block 5 (40x6, 3-5)", 240, 28, (3, 5), 1),
        ("MixNet-S block 9 (120x3, 3-5-7-9)", 360, 14, (3, 5, 7, 9), 1),
        ("MixNet-S block 10 (120x6, 3-5-7-9-11, s2)", 720, 14, (3, 5, 7, 9, 11), 2),
    )
)  # fmt: skip

register(
    WorkloadKind(
        "mixconv",
        MixConvParams,
        build_mixconv,
        "MixConv (Tan and Le): depthwise conv with one kernel size per channel group",
        configs=CONFIGS,
    )
)
