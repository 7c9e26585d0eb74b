"""Shift workloads: Wu et al.'s spatial shift, its conv-shift-conv module, and the
shift-based primitives of AddressNet, all built from the IR's primitive ops.

* **shift** (Wu et al. 2017, "Shift: A Zero FLOP, Zero Parameter Alternative to Spatial
  Convolutions", arXiv 1711.08141): the C channels are split into k*k groups of
  floor(C / k*k) consecutive channels; group i moves by the i-th offset of the k x k
  grid (row-major, the centre group stays) and the vacated pixels are zero; the
  C mod k*k channels left over stay in place, as in the authors' CUDA kernel
  (alvinwan/shiftresnet-cifar, ``models/shiftnet_cuda_v2``: channels from
  floor(C / k*k) * k*k on get shift 0). See :func:`convbench.graph.shift_offsets`.
  No parameters, no multiply-adds. The kernel assigns the offsets to channels modulo
  k*k instead of in consecutive groups: with the same number of channels per offset,
  that is a permutation of channels, which the surrounding 1x1 convs absorb.
  ``leftover: spread`` selects convbench's earlier rule, which spreads the leftover
  channels over the first groups (``numpy.array_split``): that is *not* a permutation
  of the authors' shift, since fewer channels stay (C = 96, k = 3: 11 instead of 16).
* **shift_conv**: the paper's conv-shift-conv (CSC) module as ShiftResNet uses it:
  1x1 conv C_in -> E * C_out + BN + ReLU, shift, 1x1 conv -> C_out with the module's stride
  + BN (E: the expansion).

AddressNet (Zhong et al. 2018, "Shift-based Primitives for Efficient Convolutional Neural
Networks", arXiv 1809.08458) realises three primitives by moving pointers instead of
copying memory. Here they are defined by the values they produce (our reading of the
paper's section 3; a framework that copies computes the same values):

* **channel_shift** (replaces ShuffleNet's channel shuffle): the channels move
  cyclically by ``shift``, ``out[:, c] = x[:, (c + shift) mod C]``, so each group of the
  next group conv reads channels of two groups of the previous one. In the IR: two
  ``slice`` and a ``concat``.
* **address_shift** (the spatial shift done by offsetting the start address of each
  channel's row-major H*W plane): ``out_flat[n, c, i] = x_flat[n, c, i + a_c]`` where
  ``0 <= i + a_c < H*W``, else 0. The channels form five nearly equal consecutive groups
  with a = +W (up), +1 (left), 0, -1 (right), -W (down): a horizontal move wraps pixels
  into the neighbouring row, unlike :func:`shift`. In the IR: ``reshape`` to (N, C, H*W),
  per group ``slice`` + ``pad``, ``concat``, ``reshape`` back.
* **shortcut_shift** (the shortcut realised without a copy: the branch output is written
  right after the block's input in a buffer allocated in advance and the next block reads
  the window shifted by the branch's k channels): ``out = concat(x[:, k:], branch)``
  along the channels, for an input x of C channels and a branch of k <= C channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from convbench.graph import Graph, GraphBuilder, Node, shift_offsets
from convbench.workloads import WorkloadKind, register
from convbench.workloads.layers import _Params

#: Where the C mod k*k channels left over by a shift's k*k groups go (:func:`shift_offsets`):
#: ``unshifted`` (the authors' kernel) or ``spread`` over the first groups (convbench's earlier rule).
Leftover = Literal["unshifted", "spread"]


def shift_layer(
    b: GraphBuilder,
    x: str,
    kernel: int = 3,
    dilation: int = 1,
    name: str | None = None,
    leftover: Leftover = "unshifted",
) -> str:
    """Append Wu et al.'s k x k shift of ``x`` (``leftover``: :func:`shift_offsets`)."""
    offsets = shift_offsets(b.shape(x)[1], kernel, dilation, leftover)
    return b.shift(x, offsets, name=name or b.unique("shift"))


def shift_conv_block(
    b: GraphBuilder,
    x: str,
    out_channels: int,
    stride: int = 1,
    expansion: int = 1,
    kernel: int = 3,
    prefix: str = "",
    leftover: Leftover = "unshifted",
) -> str:
    """CSC module: 1x1 conv to expansion * out + BN + ReLU, shift, strided 1x1 conv + BN."""
    mid = expansion * out_channels
    y = b.act(b.batchnorm(b.conv2d(x, mid, 1, name=f"{prefix}conv1"), name=f"{prefix}bn1"), "relu")
    y = shift_layer(b, y, kernel, name=f"{prefix}shift", leftover=leftover)
    return b.batchnorm(
        b.conv2d(y, out_channels, 1, stride=stride, name=f"{prefix}conv2"), name=f"{prefix}bn2"
    )


def channel_shift(b: GraphBuilder, x: str, amount: int, name: str | None = None) -> str:
    """Cyclic channel shift: ``out[:, c] = x[:, (c + amount) mod C]``."""
    c = b.shape(x)[1]
    amount %= c
    name = name or b.unique(f"{x}.channel_shift")
    if amount == 0:
        return b.add("concat", [x], name=name, axis=1)
    tail = b.add("slice", [x], name=f"{name}.tail", axis=1, start=amount, stop=c)
    head = b.add("slice", [x], name=f"{name}.head", axis=1, start=0, stop=amount)
    return b.add("concat", [tail, head], name=name, axis=1)


def address_offsets(channels: int, width: int) -> list[int]:
    """Per-channel address offsets of an address shift: five consecutive groups, as equal
    as possible, moved by +W, +1, 0, -1, -W."""
    offsets: list[int] = []
    for i, n in enumerate(len(g) for g in _array_split(channels, 5)):
        offsets += [(width, 1, 0, -1, -width)[i]] * n
    return offsets


def _array_split(n: int, parts: int) -> list[range]:
    q, r = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        size = q + (1 if i < r else 0)
        out.append(range(start, start + size))
        start += size
    return out


def address_shift(b: GraphBuilder, x: str, name: str | None = None) -> str:
    """Shift each channel's flattened plane by its address offset, zero fill."""
    n, c, h, w = b.shape(x)
    name = name or b.unique(f"{x}.address_shift")
    flat = b.reshape(x, (n, c, h * w), name=f"{name}.flat")
    offsets = address_offsets(c, w)
    parts, start = [], 0
    while start < c:
        a = offsets[start]
        stop = start
        while stop < c and offsets[stop] == a:
            stop += 1
        y = b.add("slice", [flat], name=f"{name}.c{start}", axis=1, start=start, stop=stop)
        if a:
            y = b.add(
                "slice",
                [y],
                name=f"{name}.c{start}.crop",
                axis=2,
                start=max(0, a),
                stop=h * w + min(0, a),
            )
            y = b.pad(y, ((0, 0), (0, 0), (max(0, -a), max(0, a))), name=f"{name}.c{start}.pad")
        parts.append(y)
        start = stop
    joined = b.add("concat", parts, name=f"{name}.joined", axis=1)
    return b.reshape(joined, (n, c, h, w), name=name)


@dataclass(frozen=True)
class AddressShiftMatch:
    """An address shift found in a graph (:func:`match_address_shift`)."""

    source: str  #: the (N, C, H, W) value shifted
    offsets: tuple[int, ...]  #: a_c per channel: ``out_flat[n, c, i] = x_flat[n, c, i + a_c]``
    nodes: tuple[str, ...]  #: the pattern's nodes in graph order, the final reshape last


def match_address_shift(node: Node, graph: Graph) -> AddressShiftMatch | None:
    """The address shift that ``node`` ends, or None.

    Recognises the IR form :func:`address_shift` builds, by structure (not by names):
    ``reshape`` (N, C, H, W) -> (N, C, H*W); slices along the channels that partition
    them in order, each either alone (a = 0) or followed by a ``slice`` of the flat plane
    and a ``pad`` of it that together move it by a within the plane with zero fill;
    a ``concat`` of them along the channels; ``node``, the ``reshape`` back to
    (N, C, H, W). A backend with a kernel for the whole pattern (the torch ``kernel``
    variant: ``convbench_torch.kernels.shift.address_shift_with_tables``) replaces it."""
    if node.op != "reshape" or len(node.inputs) != 1:
        return None
    joined = graph[node.inputs[0]]
    if joined.op != "concat" or joined.attrs.get("axis") != 1 or not joined.inputs:
        return None
    offsets: list[int] = []
    inner: list[str] = []
    flat_name: str | None = None
    for part in joined.inputs:
        p = graph[part]
        a, chain = 0, []
        if p.op == "pad":
            pads = tuple(tuple(int(v) for v in pair) for pair in p.attrs["pads"])
            crop = graph[p.inputs[0]]
            if len(pads) != 3 or pads[0] != (0, 0) or pads[1] != (0, 0) or crop.op != "slice" or crop.attrs.get("axis") != 2:
                return None
            hw = graph.shape(crop.inputs[0])[2]
            left, right = pads[2]
            start, stop = int(crop.attrs["start"]), int(crop.attrs["stop"])
            a = start - left
            if left != max(0, -a) or right != max(0, a) or start != max(0, a) or stop != hw + min(0, a) or a == 0:
                return None
            chain = [crop.name, p.name]
            p = graph[crop.inputs[0]]
        if p.op != "slice" or p.attrs.get("axis") != 1:
            return None
        if flat_name is None:
            flat_name = p.inputs[0]
        elif p.inputs[0] != flat_name:
            return None
        begin, end = int(p.attrs["start"]), int(p.attrs["stop"])
        if begin != len(offsets) or end <= begin:
            return None
        offsets += [a] * (end - begin)
        inner += [p.name, *chain]
    assert flat_name is not None
    flat = graph[flat_name]
    if flat.op != "reshape" or len(flat.inputs) != 1:
        return None
    source = flat.inputs[0]
    shape = graph.shape(source)
    if len(shape) != 4 or tuple(graph.shape(node.name)) != tuple(shape):
        return None
    n, c, h, w = shape
    if tuple(graph.shape(flat_name)) != (n, c, h * w) or len(offsets) != c:
        return None
    return AddressShiftMatch(source=source, offsets=tuple(offsets), nodes=(flat_name, *inner, joined.name, node.name))


def is_address_shift(node: Node, graph: Graph) -> bool:
    """Whether ``node`` ends an address shift (:func:`match_address_shift`)."""
    return match_address_shift(node, graph) is not None


def shortcut_shift(b: GraphBuilder, x: str, branch: str, name: str | None = None) -> str:
    """``concat(x[:, k:], branch)``: the window of C channels shifted by the branch's k."""
    c, k = b.shape(x)[1], b.shape(branch)[1]
    name = name or b.unique(f"{x}.shortcut_shift")
    if k == c:
        return b.add("concat", [branch], name=name, axis=1)
    kept = b.add("slice", [x], name=f"{name}.kept", axis=1, start=k, stop=c)
    return b.add("concat", [kept, branch], name=name, axis=1)


class ShiftParams(_Params):
    """A k x k shift of a (channels, size, size) input."""

    channels: int = Field(ge=1)
    size: int = Field(ge=2)
    kernel: int = Field(3, ge=1)
    dilation: int = Field(1, ge=1)
    leftover: Leftover = "unshifted"

    @model_validator(mode="after")
    def _fits(self) -> ShiftParams:
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {self.kernel}")
        if self.dilation * (self.kernel // 2) >= self.size:
            raise ValueError(
                f"a shift of {self.dilation * (self.kernel // 2)} does not fit a {self.size}x{self.size} plane"
            )
        return self


class ShiftConvParams(_Params):
    """Wu et al.'s conv-shift-conv module on a (in_channels, size, size) input."""

    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    size: int = Field(ge=2)
    expansion: int = Field(1, ge=1)
    kernel: int = Field(3, ge=1)
    stride: int = Field(1, ge=1)
    leftover: Leftover = "unshifted"


class ChannelShiftParams(_Params):
    """A cyclic shift by ``shift`` channels of a (channels, size, size) input."""

    channels: int = Field(ge=2)
    size: int = Field(ge=1)
    shift: int = Field(ge=1)

    @model_validator(mode="after")
    def _fits(self) -> ChannelShiftParams:
        if self.shift >= self.channels:
            raise ValueError(
                f"shift ({self.shift}) must be smaller than channels ({self.channels})"
            )
        return self


class AddressShiftParams(_Params):
    """An address shift of a (channels, size, size) input."""

    channels: int = Field(ge=1)
    size: int = Field(ge=2)


class ShortcutShiftParams(_Params):
    """``concat(x[:, k:], branch)`` for x (channels, size, size), branch (k, size, size)."""

    channels: int = Field(ge=1)
    size: int = Field(ge=1)
    branch_channels: int = Field(ge=1)

    @model_validator(mode="after")
    def _fits(self) -> ShortcutShiftParams:
        if self.branch_channels > self.channels:
            raise ValueError(
                f"branch_channels ({self.branch_channels}) must be <= channels ({self.channels})"
            )
        return self


def build_shift(p: ShiftParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.channels, p.size, p.size))
    return b.build([shift_layer(b, x, p.kernel, p.dilation, name="shift", leftover=p.leftover)])


def build_shift_conv(p: ShiftConvParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.in_channels, p.size, p.size))
    return b.build([shift_conv_block(b, x, p.out_channels, p.stride, p.expansion, p.kernel, leftover=p.leftover)])


def build_channel_shift(p: ChannelShiftParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.channels, p.size, p.size))
    return b.build([channel_shift(b, x, p.shift, name="channel_shift")])


def build_address_shift(p: AddressShiftParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.channels, p.size, p.size))
    return b.build([address_shift(b, x, name="address_shift")])


def build_shortcut_shift(p: ShortcutShiftParams, batch: int) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (batch, p.channels, p.size, p.size))
    branch = b.input("branch", (batch, p.branch_channels, p.size, p.size))
    return b.build([shortcut_shift(b, x, branch, name="shortcut_shift")])


register(
    WorkloadKind(
        "shift", ShiftParams, build_shift, "k x k shift (Wu et al.): zero FLOPs, zero parameters"
    )
)
register(
    WorkloadKind(
        "shift_conv", ShiftConvParams, build_shift_conv, "conv-shift-conv module (1x1, shift, 1x1)"
    )
)
register(
    WorkloadKind(
        "channel_shift",
        ChannelShiftParams,
        build_channel_shift,
        "AddressNet channel shift (cyclic)",
    )
)
register(
    WorkloadKind(
        "address_shift",
        AddressShiftParams,
        build_address_shift,
        "AddressNet address shift (flattened plane)",
    )
)
register(
    WorkloadKind(
        "shortcut_shift", ShortcutShiftParams, build_shortcut_shift, "AddressNet shortcut shift"
    )
)
