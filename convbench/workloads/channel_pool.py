"""Cross-channel pooling: the maximum over each group of k adjacent channels.

``out[n, j, h, w] = max over c in [j*k, (j+1)*k) of x[n, c, h, w]``, C / k output
channels; no parameters, no multiply-adds. It is the layer that Condensation-Net (Chen et
al. 2021, "Condensation-Net: Memory-Efficient Network Architecture with Cross-Channel
Pooling Layers and Virtual Feature Maps", arXiv 2104.14124) places after convolutions of
a Tiny-YOLOv2-like detector, and the maxout unit of Goodfellow et al. 2013 (arXiv
1302.4389) computes the same function over adjacent channels.

Not confirmed: convbench could read only the Condensation-Net abstract, not the paper's
definition of its layer nor any code of its authors. That its groups are of *adjacent*
channels (rather than channels C / k apart), that it takes the maximum (rather than
another reduction), and the group sizes and feature-map shapes it uses are our reading,
not checked against the paper; the named configurations are shapes of our choosing.

In the IR: :meth:`convbench.graph.GraphBuilder.channel_maxpool` (``reshape`` to
(N, 1, C, H*W), ``maxpool`` with a (k, 1) window and stride, ``reshape`` to
(N, C / k, H, W)), so every backend runs it with ops it already lowers. In training the
gradient goes to the first maximum of each group (the reference's maxpool rule; ties have
probability zero on convbench's random data).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import NamedConfig, WorkloadKind, register
from convbench.workloads.layers import _Params


class ChannelPoolParams(_Params):
    """Max over groups of ``group`` adjacent channels of a (channels, size, size) input."""

    channels: int = Field(ge=1)
    size: int = Field(ge=1, description="input height and width")
    group: int = Field(2, ge=1, description="adjacent channels per output channel (k)")

    @model_validator(mode="after")
    def _fits(self) -> ChannelPoolParams:
        if self.channels % self.group:
            raise ValueError(f"channels ({self.channels}) must be a multiple of group ({self.group})")
        return self


def build_channel_pool(p: ChannelPoolParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.channels, p.size, p.size))
    return b.build([b.channel_maxpool(x, p.group, name="channel_pool")])


CONFIGS = tuple(
    NamedConfig(name, {"channels": c, "size": s, "group": k})
    for name, c, s, k in (
        ("256x52x52, k=2 (our shape)", 256, 52, 2),
        ("1024x13x13, k=4 (our shape)", 1024, 13, 4),
    )
)  # fmt: skip

register(
    WorkloadKind(
        "channel_pool",
        ChannelPoolParams,
        build_channel_pool,
        "cross-channel max pooling over k adjacent channels (Condensation-Net; maxout)",
        configs=CONFIGS,
    )
)
