"""Group convolution layer workloads (the ``blockdiag`` and ``split`` variants rewrite them).

``group_conv``: a k x k conv from ``in_channels`` to ``out_channels`` in ``groups`` groups
(output channel o reads the input channels of group o // (out_channels / groups)),
optionally followed by BN and an activation. ``groups = 1`` is a dense conv; the
depthwise case (groups = in_channels) has its own kind, ``depthwise``.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import WorkloadKind, register
from convbench.workloads.layers import Activation, _Params


class GroupConvParams(_Params):
    """A grouped k x k conv on a (in_channels, size, size) input, optionally + BN + act."""

    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    size: int = Field(ge=1, description="input height and width")
    groups: int = Field(ge=1)
    kernel: int = Field(1, ge=1)
    stride: int = Field(1, ge=1)
    bias: bool = False
    bn: bool = False
    act: Activation = "none"

    @model_validator(mode="after")
    def _divisible(self) -> GroupConvParams:
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                f"must both be multiples of groups ({self.groups})"
            )
        return self


def build_group_conv(p: GroupConvParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.in_channels, p.size, p.size))
    y = b.conv2d(
        x, p.out_channels, p.kernel, stride=p.stride, groups=p.groups, bias=p.bias, name="gconv"
    )
    if p.bn:
        y = b.batchnorm(y, name="bn")
    return b.build([b.act(y, p.act)])


register(WorkloadKind("group_conv", GroupConvParams, build_group_conv, "k x k group convolution"))
