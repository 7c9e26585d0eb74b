"""Layer workloads: depthwise conv, pointwise conv and the depthwise-separable block."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import WorkloadKind, register

Activation = Literal["none", "relu", "relu6"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DepthwiseParams(_Params):
    """A k x k depthwise conv on a (channels, size, size) input, optionally + BN + act."""

    channels: int = Field(ge=1)
    size: int = Field(ge=1, description="input height and width")
    kernel: int = Field(3, ge=1)
    stride: int = Field(1, ge=1)
    multiplier: int = Field(1, ge=1, description="channel multiplier: outputs per input channel")
    bias: bool = False
    bn: bool = False
    act: Activation = "none"


class PointwiseParams(_Params):
    """A 1x1 conv from in_channels to out_channels, optionally + BN + act."""

    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    size: int = Field(ge=1)
    bn: bool = False
    act: Activation = "none"


class SeparableParams(_Params):
    """MobileNet's block: dw k x k (stride) + BN + act, then pw 1x1 + BN + act."""

    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    size: int = Field(ge=1)
    kernel: int = Field(3, ge=1)
    stride: int = Field(1, ge=1)
    act: Activation = "relu"


def _finish(b: GraphBuilder, y: str, bn: bool, act: Activation) -> str:
    if bn:
        y = b.batchnorm(y, name="bn")
    return b.act(y, act)


def depthwise_layer(
    b: GraphBuilder, x: str, kernel: int, stride: int, multiplier: int = 1, name: str = "dw", bias: bool = False
) -> str:
    """Append a depthwise conv (groups = channels) to ``b``."""
    c = b.shape(x)[1]
    return b.conv2d(x, c * multiplier, kernel, stride=stride, groups=c, bias=bias, name=name)


def build_depthwise(p: DepthwiseParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.channels, p.size, p.size))
    y = depthwise_layer(b, x, p.kernel, p.stride, p.multiplier, bias=p.bias)
    return b.build([_finish(b, y, p.bn, p.act)])


def build_pointwise(p: PointwiseParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.in_channels, p.size, p.size))
    y = b.conv2d(x, p.out_channels, 1, name="pw")
    return b.build([_finish(b, y, p.bn, p.act)])


def separable_block(
    b: GraphBuilder, x: str, out_channels: int, stride: int, kernel: int = 3, act: Activation = "relu", prefix: str = ""
) -> str:
    """Depthwise k x k + BN + act, then pointwise 1x1 + BN + act; returns the output."""
    y = depthwise_layer(b, x, kernel, stride, name=f"{prefix}dw")
    y = b.act(b.batchnorm(y, name=f"{prefix}dw.bn"), act)
    y = b.conv2d(y, out_channels, 1, name=f"{prefix}pw")
    return b.act(b.batchnorm(y, name=f"{prefix}pw.bn"), act)


def build_separable(p: SeparableParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.in_channels, p.size, p.size))
    return b.build([separable_block(b, x, p.out_channels, p.stride, p.kernel, p.act)])


register(WorkloadKind("depthwise", DepthwiseParams, build_depthwise, "k x k depthwise convolution"))
register(WorkloadKind("pointwise", PointwiseParams, build_pointwise, "1x1 convolution"))
register(
    WorkloadKind("separable", SeparableParams, build_separable, "depthwise-separable block (dw + pw)")
)
