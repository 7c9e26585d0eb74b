"""Channel shuffle and channel split (ShuffleNet v1 and v2), built from primitive ops.

* **channel shuffle** (Zhang et al. 2017, arXiv 1707.01083): the C = g * n channels, seen
  as g groups of n, are reshaped to (g, n), transposed to (n, g) and flattened, so output
  channel ``i * g + j`` is input channel ``j * n + i``. In the IR: ``reshape``
  (N, g, n, H, W), ``transpose`` (0, 2, 1, 3, 4), ``reshape`` (N, C, H, W).
* **channel split** (Ma et al. 2018, arXiv 1807.11164): the channels are cut into
  consecutive parts (ShuffleNet v2: two halves, ``torch.chunk(2)``); each part is a
  ``slice`` along axis 1.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from convbench.graph import Graph, GraphBuilder
from convbench.workloads import WorkloadKind, register
from convbench.workloads.layers import _Params


def channel_shuffle(b: GraphBuilder, x: str, groups: int, name: str | None = None) -> str:
    """Append a channel shuffle of ``x`` in ``groups`` groups; returns the shuffled node."""
    n, c, h, w = b.shape(x)
    if c % groups:
        raise ValueError(f"channel shuffle: {c} channels are not a multiple of {groups} groups")
    name = name or b.unique(f"{x}.shuffle")
    grouped = b.reshape(x, (n, groups, c // groups, h, w), name=f"{name}.grouped")
    swapped = b.transpose(grouped, (0, 2, 1, 3, 4), name=f"{name}.transposed")
    return b.reshape(swapped, (n, c, h, w), name=name)


def channel_split(b: GraphBuilder, x: str, parts: int = 2, name: str | None = None) -> list[str]:
    """Cut the channels of ``x`` into ``parts`` equal consecutive slices."""
    c = b.shape(x)[1]
    if c % parts:
        raise ValueError(f"channel split: {c} channels are not a multiple of {parts} parts")
    name = name or b.unique(f"{x}.split")
    step = c // parts
    return [
        b.add("slice", [x], name=f"{name}.{i}", axis=1, start=i * step, stop=(i + 1) * step)
        for i in range(parts)
    ]


class ChannelShuffleParams(_Params):
    """A channel shuffle of a (channels, size, size) input in ``groups`` groups."""

    channels: int = Field(ge=1)
    size: int = Field(ge=1)
    groups: int = Field(ge=1)

    @model_validator(mode="after")
    def _divisible(self) -> ChannelShuffleParams:
        if self.channels % self.groups:
            raise ValueError(
                f"channels ({self.channels}) must be a multiple of groups ({self.groups})"
            )
        return self


class ChannelSplitParams(_Params):
    """A (channels, size, size) input cut into ``parts`` channel slices (each an output)."""

    channels: int = Field(ge=1)
    size: int = Field(ge=1)
    parts: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _divisible(self) -> ChannelSplitParams:
        if self.channels % self.parts:
            raise ValueError(
                f"channels ({self.channels}) must be a multiple of parts ({self.parts})"
            )
        return self


def build_channel_shuffle(p: ChannelShuffleParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.channels, p.size, p.size))
    return b.build([channel_shuffle(b, x, p.groups, name="shuffle")])


def build_channel_split(p: ChannelSplitParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.channels, p.size, p.size))
    return b.build(channel_split(b, x, p.parts, name="split"))


register(
    WorkloadKind(
        "channel_shuffle",
        ChannelShuffleParams,
        build_channel_shuffle,
        "ShuffleNet channel shuffle (reshape, transpose, reshape)",
    )
)
register(
    WorkloadKind(
        "channel_split",
        ChannelSplitParams,
        build_channel_split,
        "ShuffleNet v2 channel split (slices)",
    )
)
