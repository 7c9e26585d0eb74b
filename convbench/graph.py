"""convbench's intermediate representation: a small, framework-free dataflow graph.

A :class:`Graph` is an ordered list of :class:`Node` objects in topological order.
Every value that flows through the graph, weights included, is a node's output, so a
variant can rewrite how a weight is *made* (e.g. a depthwise weight multiplied by a 0/1
mask into a diagonal one) while the trainable parameter stays the same tensor.

Tensor conventions (logical; a backend may use another memory layout at its boundary):

* activations are NCHW; ``linear`` and ``flatten`` produce (N, F);
* conv weights are (C_out, C_in / groups, kh, kw); linear weights are (out, in);
* padding is symmetric, (ph, pw) zeros on each side;
* a depthwise conv with channel multiplier m has groups = C_in, C_out = m * C_in, and
  output channel o reads input channel o // m.

Node kinds:

* sources: ``input`` (data fed to the graph), ``param`` (trainable weight),
  ``const`` (a non-trainable tensor: BN running statistics, masks);
* ops: ``conv2d``, ``batchnorm``, ``relu``, ``relu6``, ``sigmoid``, ``add``, ``mul``,
  ``concat``, ``slice``, ``avgpool``, ``maxpool``, ``global_avgpool``, ``linear``,
  ``flatten``, ``upsample``, ``prelu``, and the data-movement primitives below.
* ``upsample`` (attr ``scale``: (sh, sw), positive ints; nearest only): every pixel
  repeated into an sh x sw block, ``out[n, c, h, w] = x[n, c, h // sh, w // sw]``,
  output (N, C, sh * H, sw * W) (ThunderNet's CEM). Its gradient sums each block.
* ``prelu`` (inputs x, of rank >= 2, and a slope ``a`` of shape (C,), C = x's axis 1;
  He et al. 2015, "Delving Deep into Rectifiers", arXiv 1502.01852; PyTorch's
  ``nn.PReLU(num_parameters=C)``): ``out = x`` where ``x > 0``, else ``a_c * x``, one
  learnable slope per channel. Its gradients: ``gx = gy`` where ``x > 0``, else
  ``a_c * gy`` (PyTorch's rule, so x = 0 takes the slope), and ``ga_c`` the sum over
  every axis but 1 of ``gy * min(x, 0)``. :meth:`GraphBuilder.prelu` makes the slope a
  ``param`` with init ``prelu_slope`` (PyTorch's init is the constant 0.25;
  :mod:`convbench.data` draws each slope uniformly in [0, 0.5], mean 0.25, as it draws
  BN's gamma around 1, so a backend that mixes up channels fails verification).

Data-movement primitives (no multiply-adds; compact networks build their channel
shuffles, channel splits, shifts and shortcuts from them, so a backend lowers four
simple ops instead of one op per paper):

* ``reshape`` (attr ``shape``: the whole output shape, batch included): the input's
  elements, read in row-major (C) order, laid out in the new shape; same element count.
  A channel shuffle with g groups of n channels is ``reshape`` (N, g, n, H, W),
  ``transpose`` (0, 2, 1, 3, 4), ``reshape`` (N, g*n, H, W).
* ``transpose`` (attr ``perm``): output axis i is input axis ``perm[i]``
  (``numpy.transpose``, ``torch.permute``).
* ``pad`` (attr ``pads``: one (before, after) pair of non-negative ints per axis): zeros
  added before and after along each axis; output size ``before + size + after``.
* ``shift`` (attr ``offsets``: one (dy, dx) pair of ints per channel; 4-D input): every
  channel is moved spatially by its own offset and the vacated pixels are zero,
  ``out[n, c, h, w] = x[n, c, h - dy_c, w - dx_c]`` where ``0 <= h - dy_c < H`` and
  ``0 <= w - dx_c < W``, else 0. Each ``|dy_c| < H`` and ``|dx_c| < W``.
  :func:`shift_offsets` builds the offsets of Wu et al.'s k x k shift (the channels
  left over by k*k groups stay in place, as in the authors' kernel) and
  :func:`shift_runs` groups consecutive channels that share an offset.
* ``gather`` (attrs ``axis`` and ``indices``, a fixed tuple of ints in
  ``[0, size of axis)``, repeats allowed): ``out`` along ``axis`` is
  ``x[..., indices[j], ...]`` for j < len(indices) (``numpy.take``, ``torch.index_select``,
  ``tf.gather``, ``jnp.take``, ONNX ``Gather``, MXNet ``take``). Its gradient is the
  adjoint, a scatter-add: ``gx[..., i, ...]`` sums ``gy`` over every j with
  ``indices[j] = i``. :func:`index_runs` groups consecutive indices.

Composite layers (defined once here, as :class:`GraphBuilder` methods built from the ops
above, so every backend runs them through the ops it already lowers):

* ``mixconv`` (Tan and Le 2019, "MixConv: Mixed Depthwise Convolutional Kernels", arXiv
  1907.09595): the C channels split into g groups of consecutive channels
  (:func:`mixconv_splits`: floor(C / g) each, the remainder added to the first group),
  group i a depthwise conv with its own odd kernel k_i ('same' padding (k_i - 1) / 2,
  the common stride), the outputs concatenated: ``slice`` x g, ``conv2d`` x g,
  ``concat``. One group is a plain depthwise conv.
* ``channel_maxpool`` (cross-channel pooling): the maximum over each group of k
  adjacent channels, ``out[n, j] = max over c in [j*k, (j+1)*k) of x[n, c]``:
  ``reshape`` (N, 1, C, H*W), ``maxpool`` with a (k, 1) window and stride,
  ``reshape`` (N, C / k, H, W).

* ``eca`` (Wang et al. 2020, "ECA-Net: Efficient Channel Attention for Deep
  Convolutional Neural Networks", arXiv 1910.03151; the authors' ``eca_layer``,
  BangguWu/ECANet ``models/eca_module.py``): a global average pool, a 1-D conv of odd
  kernel k across the channels (no bias, padding (k - 1) / 2), a sigmoid, and the input
  scaled channel-wise: ``global_avgpool``, ``reshape`` (N, 1, C, 1), ``conv2d`` with a
  (1, 1, k, 1) weight and padding ((k - 1) / 2, 0), ``reshape`` (N, C, 1, 1),
  ``sigmoid``, and a broadcasting ``mul``.
* ``sliding_channel_conv`` (DSXplore's SCC, Wang et al., IPDPS 2021, arXiv 2101.00745):
  a 1x1 conv in which output channel c reads a cyclic window of U = C_in / G input
  channels starting at :func:`scc_window_starts`; as one dense ``conv2d`` whose weight
  is a (C_out, C_in) ``param`` times a 0/1 ``const`` mask (``mul``; form ``masked``: only
  the windows' C_out * U entries get gradients), or the SCC's own (C_out, U) ``param``
  scattered into it by a ``mul`` with a const pattern and an ``avgpool`` summing over U
  (form ``compact``); or (form ``gather``) a ``gather`` of the C_out * U channels the
  windows read, in window order, then a grouped 1x1 ``conv2d`` with C_out groups of U
  channels and the SCC's own (C_out, U, 1, 1) weight: the SCC's own multiply-adds, at
  the cost of a C_out * U channel temporary.

Counting conventions (README, "Counting"):

* **parameters** are the elements of ``param`` nodes (conv and linear weights and biases,
  BN scale and shift); ``const`` nodes (BN running statistics, masks) are not parameters;
* **multiply-adds** (MACs) are the multiply-accumulates of ``conv2d`` and ``linear``
  only, as executed: a conv counts N * C_out * H_out * W_out * (C_in / groups) * kh * kw
  whatever values its weight holds, so a diagonalwise rewrite counts the zeros it
  multiplies; every other op counts zero MACs. FLOPs, where printed, are 2 * MACs;
* **bytes** are the fewest bytes an op must move when it runs alone: it reads each of its
  inputs once and writes its output once, at the element size of the case's dtype. A
  graph's bytes are the sum over its ops (no fusion is assumed); source nodes move
  nothing by themselves, and neither does ``reshape`` (a view of its materialised input).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Shape = tuple[int, ...]

SOURCE_OPS = frozenset({"input", "param", "const"})
ELEMENTWISE_UNARY = frozenset({"relu", "relu6", "sigmoid"})
OPS = SOURCE_OPS | ELEMENTWISE_UNARY | frozenset(
    {
        "conv2d",
        "batchnorm",
        "add",
        "mul",
        "concat",
        "slice",
        "avgpool",
        "maxpool",
        "global_avgpool",
        "linear",
        "flatten",
        "reshape",
        "transpose",
        "pad",
        "shift",
        "gather",
        "upsample",
        "prelu",
    }
)

#: Initialisers a ``param`` or random ``const`` may name; :mod:`convbench.data` draws them.
INITS = frozenset(
    {"he_normal", "fan_in_uniform", "bn_gamma", "bn_beta", "running_mean", "running_var", "zeros", "prelu_slope"}
)


class GraphError(ValueError):
    """A graph is malformed: unknown op, wrong arity, or inconsistent shapes."""


@dataclass(frozen=True, eq=False)
class Node:
    """One value of the graph: its op, the names of its inputs, attributes and shape."""

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)
    shape: Shape = ()

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Graph:
    """A topologically ordered list of nodes with named outputs."""

    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]

    def __post_init__(self) -> None:
        seen: dict[str, Node] = {}
        for node in self.nodes:
            if node.name in seen:
                raise GraphError(f"duplicate node name {node.name!r}")
            for name in node.inputs:
                if name not in seen:
                    raise GraphError(f"node {node.name!r} reads {name!r} before it is defined")
            seen[node.name] = node
        for name in self.outputs:
            if name not in seen:
                raise GraphError(f"output {name!r} is not a node")
        object.__setattr__(self, "_by_name", seen)

    def __getitem__(self, name: str) -> Node:
        return self._by_name[name]  # type: ignore[attr-defined]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name  # type: ignore[attr-defined]

    def of_op(self, *ops: str) -> list[Node]:
        return [n for n in self.nodes if n.op in ops]

    @property
    def inputs(self) -> list[Node]:
        return self.of_op("input")

    @property
    def params(self) -> list[Node]:
        return self.of_op("param")

    @property
    def consts(self) -> list[Node]:
        return self.of_op("const")

    @property
    def ops(self) -> list[Node]:
        return [n for n in self.nodes if n.op not in SOURCE_OPS]

    def shape(self, name: str) -> Shape:
        return self[name].shape

    def param_count(self) -> int:
        """Trainable parameters: elements of every ``param`` node."""
        return sum(n.size for n in self.params)

    def macs(self) -> int:
        """Executed multiply-adds of the whole graph (conv2d and linear), batch included."""
        return sum(node_macs(self, n) for n in self.ops)

    def bytes_moved(self, itemsize: int = 4) -> int:
        """Sum over ops of the fewest bytes each must move (see module docstring)."""
        return sum(node_bytes(self, n, itemsize) for n in self.ops)

    @property
    def batch(self) -> int:
        return self.inputs[0].shape[0]


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    a, b = value
    return (int(a), int(b))


def conv_output_hw(
    hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> tuple[int, int]:
    """Spatial output size of a convolution or pooling window (floor mode)."""
    out = []
    for size, k, s, p, d in zip(hw, kernel, stride, padding, dilation, strict=True):
        span = d * (k - 1) + 1
        o = (size + 2 * p - span) // s + 1
        if o < 1:
            raise GraphError(f"window {k} (dilation {d}) does not fit input {size} + 2*{p}")
        out.append(o)
    return out[0], out[1]


def infer_shape(op: str, in_shapes: list[Shape], attrs: Mapping[str, Any]) -> Shape:
    """Output shape of ``op`` applied to inputs of ``in_shapes``; raises GraphError."""

    def arity(*allowed: int) -> None:
        if len(in_shapes) not in allowed:
            raise GraphError(f"{op} takes {allowed} inputs, got {len(in_shapes)}")

    if op in SOURCE_OPS:
        arity(0)
        return tuple(int(d) for d in attrs["shape"])
    if op == "conv2d":
        arity(2, 3)
        x, w = in_shapes[0], in_shapes[1]
        if len(x) != 4 or len(w) != 4:
            raise GraphError(f"conv2d wants 4-D input and weight, got {x} and {w}")
        groups = attrs["groups"]
        n, c, h, wd = x
        if c % groups or w[0] % groups:
            raise GraphError(f"conv2d: channels {c} -> {w[0]} not divisible by groups {groups}")
        if w[1] * groups != c:
            raise GraphError(f"conv2d: weight {w} with groups {groups} does not fit {c} channels")
        if len(in_shapes) == 3 and in_shapes[2] != (w[0],):
            raise GraphError(f"conv2d: bias {in_shapes[2]} does not fit {w[0]} channels")
        oh, ow = conv_output_hw(
            (h, wd), (w[2], w[3]), attrs["stride"], attrs["padding"], attrs["dilation"]
        )
        return (n, w[0], oh, ow)
    if op == "batchnorm":
        arity(5)
        x = in_shapes[0]
        for s in in_shapes[1:]:
            if s != (x[1],):
                raise GraphError(f"batchnorm: statistics {s} do not fit {x[1]} channels")
        return x
    if op in ELEMENTWISE_UNARY:
        arity(1)
        return in_shapes[0]
    if op == "add":
        arity(2)
        try:  # NumPy broadcasting, as ``mul`` (ThunderNet's CEM adds a (N, C, 1, 1) vector)
            return tuple(np.broadcast_shapes(in_shapes[0], in_shapes[1]))
        except ValueError as exc:
            raise GraphError(f"add: {in_shapes[0]} and {in_shapes[1]} do not broadcast") from exc
    if op == "mul":
        arity(2)
        try:
            return tuple(np.broadcast_shapes(in_shapes[0], in_shapes[1]))
        except ValueError as exc:
            raise GraphError(f"mul: {in_shapes[0]} and {in_shapes[1]} do not broadcast") from exc
    if op == "concat":
        if not in_shapes:
            raise GraphError("concat needs at least one input")
        first = in_shapes[0]
        axis = attrs["axis"] % len(first)
        for s in in_shapes[1:]:
            if len(s) != len(first) or any(
                a != b for i, (a, b) in enumerate(zip(s, first, strict=True)) if i != axis
            ):
                raise GraphError(f"concat on axis {axis}: shapes {in_shapes} do not fit")
        out = list(first)
        out[axis] = sum(s[axis] for s in in_shapes)
        return tuple(out)
    if op == "slice":
        arity(1)
        x = in_shapes[0]
        axis, start, stop = attrs["axis"], attrs["start"], attrs["stop"]
        if not 0 <= start < stop <= x[axis]:
            raise GraphError(f"slice [{start}:{stop}] out of range for axis of size {x[axis]}")
        out = list(x)
        out[axis] = stop - start
        return tuple(out)
    if op in ("avgpool", "maxpool"):
        arity(1)
        n, c, h, w = in_shapes[0]
        if any(p > k // 2 for p, k in zip(attrs["padding"], attrs["kernel"], strict=True)):
            raise GraphError(f"{op}: padding {attrs['padding']} exceeds half the kernel {attrs['kernel']}")
        oh, ow = conv_output_hw((h, w), attrs["kernel"], attrs["stride"], attrs["padding"])
        return (n, c, oh, ow)
    if op == "global_avgpool":
        arity(1)
        n, c = in_shapes[0][:2]
        return (n, c, 1, 1)
    if op == "flatten":
        arity(1)
        x = in_shapes[0]
        return (x[0], math.prod(x[1:]))
    if op == "reshape":
        arity(1)
        shape = tuple(int(d) for d in attrs["shape"])
        if any(d < 1 for d in shape) or math.prod(shape) != math.prod(in_shapes[0]):
            raise GraphError(f"reshape: {in_shapes[0]} cannot be laid out as {shape}")
        return shape
    if op == "transpose":
        arity(1)
        perm = tuple(int(a) for a in attrs["perm"])
        if sorted(perm) != list(range(len(in_shapes[0]))):
            raise GraphError(f"transpose: {perm} is not a permutation of the axes of {in_shapes[0]}")
        return tuple(in_shapes[0][a] for a in perm)
    if op == "pad":
        arity(1)
        x, pads = in_shapes[0], attrs["pads"]
        if len(pads) != len(x) or any(len(p) != 2 or min(p) < 0 for p in pads):
            raise GraphError(f"pad: want one (before, after) pair >= 0 per axis of {x}, got {pads}")
        return tuple(d + int(a) + int(b) for d, (a, b) in zip(x, pads, strict=True))
    if op == "shift":
        arity(1)
        x, offsets = in_shapes[0], attrs["offsets"]
        if len(x) != 4 or len(offsets) != x[1]:
            raise GraphError(f"shift: want 4-D input and one offset per channel, got {x}, {len(offsets)} offsets")
        if any(abs(dy) >= x[2] or abs(dx) >= x[3] for dy, dx in offsets):
            raise GraphError(f"shift: an offset moves a channel out of its {x[2]}x{x[3]} plane")
        return x
    if op == "gather":
        arity(1)
        x, indices = in_shapes[0], attrs["indices"]
        axis = attrs["axis"]
        if not -len(x) <= axis < len(x):
            raise GraphError(f"gather: axis {axis} out of range for {x}")
        axis %= len(x)
        if not indices or any(not 0 <= int(i) < x[axis] for i in indices):
            raise GraphError(f"gather: indices must be non-empty and in [0, {x[axis]}), got {len(indices)} of them")
        out = list(x)
        out[axis] = len(indices)
        return tuple(out)
    if op == "upsample":
        arity(1)
        x, scale = in_shapes[0], attrs.get("scale")
        if len(x) != 4:
            raise GraphError(f"upsample wants a 4-D input, got {x}")
        if (
            not isinstance(scale, (tuple, list))
            or len(scale) != 2
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in scale)
        ):
            raise GraphError(f"upsample: scale must be two positive ints (sh, sw), got {scale!r}")
        if attrs.get("mode", "nearest") != "nearest":
            raise GraphError(f"upsample: only mode 'nearest' is defined, got {attrs['mode']!r}")
        return (x[0], x[1], x[2] * int(scale[0]), x[3] * int(scale[1]))
    if op == "prelu":
        arity(2)
        x, a = in_shapes
        if len(x) < 2 or a != (x[1],):
            raise GraphError(f"prelu: want an input of rank >= 2 and one slope per channel, got {x} and slope {a}")
        return x
    if op == "linear":
        arity(2, 3)
        x, w = in_shapes[0], in_shapes[1]
        if len(x) != 2 or len(w) != 2 or x[1] != w[1]:
            raise GraphError(f"linear: input {x} does not fit weight {w}")
        if len(in_shapes) == 3 and in_shapes[2] != (w[0],):
            raise GraphError(f"linear: bias {in_shapes[2]} does not fit {w[0]} outputs")
        return (x[0], w[0])
    raise GraphError(f"unknown op {op!r}")


def node_macs(graph: Graph, node: Node) -> int:
    """Executed multiply-adds of one node: conv2d and linear only."""
    if node.op == "conv2d":
        w = graph.shape(node.inputs[1])
        return node.size * w[1] * w[2] * w[3]
    if node.op == "linear":
        return node.size * graph.shape(node.inputs[1])[1]
    return 0


def node_bytes(graph: Graph, node: Node, itemsize: int = 4) -> int:
    """Fewest bytes ``node`` moves alone: every input read once, its output written once."""
    if node.op in SOURCE_OPS or node.op == "reshape":
        return 0
    elements = node.size + sum(graph[name].size for name in node.inputs)
    return elements * itemsize


#: How :func:`shift_offsets` places the ``C mod k*k`` channels left over.
SHIFT_LEFTOVERS = ("unshifted", "spread")


def shift_offsets(
    channels: int, kernel: int = 3, dilation: int = 1, leftover: str = "unshifted"
) -> tuple[tuple[int, int], ...]:
    """Per-channel offsets of a k x k shift (Wu et al. 2017, arXiv 1711.08141).

    The offsets of the k x k grid in row-major order, ``(dilation * (i // k - k // 2),
    dilation * (i % k - k // 2))`` for i < k*k (offset k*k // 2 is the centre, (0, 0)),
    are given to k*k groups of consecutive channels, group i moving by offset i.
    ``leftover`` says what becomes of the ``r = channels mod k*k`` channels left over:

    * ``"unshifted"`` (the default, the authors' rule): every group has
      ``floor(channels / k*k)`` channels and the last r channels stay in place, as in
      the authors' CUDA kernel (alvinwan/shiftresnet-cifar,
      ``models/shiftnet_cuda_v2/src/shiftnet_cuda_kernels.cu``: a channel
      ``c >= floor(C / k*k) * k*k`` gets shift 0), so ``floor(C / k*k) + r`` channels
      stay; with fewer than k*k channels none moves;
    * ``"spread"`` (convbench's earlier rule, kept as an option): the groups are as equal
      as possible, the first r groups one channel larger (``numpy.array_split``), so
      only ``ceil`` or ``floor(C / k*k)`` channels (the centre group) stay.

    For C = 96, k = 3 the authors' rule leaves 16 channels in place, ``spread`` 11.
    The authors' kernel also interleaves the groups (channel c < floor(C / k*k) * k*k
    takes offset c mod k*k, with the opposite sign convention); with ``"unshifted"``
    the offsets here are a permutation of the channels of theirs (the same offsets,
    the same number of times), which two surrounding 1x1 convs absorb. ``kernel`` must
    be odd.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise GraphError(f"shift kernel must be odd and positive, got {kernel}")
    if leftover not in SHIFT_LEFTOVERS:
        raise GraphError(f"shift leftover must be one of {SHIFT_LEFTOVERS}, got {leftover!r}")
    half, cells = kernel // 2, kernel * kernel
    if leftover == "spread":
        sizes = [len(g) for g in np.array_split(np.arange(channels), cells)]
    else:
        sizes = [channels // cells] * cells
    offsets: list[tuple[int, int]] = []
    for i, size in enumerate(sizes):
        dy, dx = dilation * (i // kernel - half), dilation * (i % kernel - half)
        offsets.extend([(dy, dx)] * size)
    offsets.extend([(0, 0)] * (channels - len(offsets)))
    return tuple(offsets)


def mixconv_splits(channels: int, groups: int) -> list[int]:
    """Channels per group of a MixConv (the authors' ``_split_channels`` in
    tensorflow/tpu, ``models/official/mnasnet/mixnet/custom_layers.py``): ``floor(C / g)``
    each, the remainder ``C mod g`` added to the first group."""
    if not 1 <= groups <= channels:
        raise GraphError(f"mixconv: {groups} groups do not fit {channels} channels")
    splits = [channels // groups] * groups
    splits[0] += channels - sum(splits)
    return splits


def scc_window_starts(in_channels: int, out_channels: int, groups: int, overlap: float) -> list[int]:
    """First input channel of each output channel's window in a sliding-channel conv:
    ``floor(c * (1 - overlap) * U) mod C_in`` with ``U = C_in / groups``, evaluated in
    float32 left to right as the authors' CUDA kernel does (YukeWang96/DSXplore_IPDPS21,
    ``SCC_conv/scc_cuda_kernel.cu``: ``__float2int_rd(item_channel_idx * (1 - overlap) *
    input_unit_dim) % input_channel``), so a product just below an integer in float32
    (overlap 0.33) floors as theirs does."""
    if groups < 1 or in_channels % groups:
        raise GraphError(f"scc: {in_channels} input channels are not {groups} groups")
    if not 0 <= overlap < 1:
        raise GraphError(f"scc: overlap must be in [0, 1), got {overlap}")
    width = in_channels // groups
    step = np.float32(1) - np.float32(overlap)
    return [int(np.floor(np.float32(c) * step * np.float32(width))) % in_channels for c in range(out_channels)]


def scc_mask(in_channels: int, out_channels: int, groups: int, overlap: float) -> np.ndarray:
    """The (C_out, C_in, 1, 1) 0/1 mask of a sliding-channel conv: output channel c reads
    the ``C_in / groups`` channels from its window start on, cyclically."""
    width = in_channels // groups
    mask = np.zeros((out_channels, in_channels, 1, 1))
    for c, start in enumerate(scc_window_starts(in_channels, out_channels, groups, overlap)):
        mask[c, [(start + i) % in_channels for i in range(width)], 0, 0] = 1.0
    return mask


def shift_runs(offsets: Sequence[Sequence[int]]) -> list[tuple[int, int, int, int]]:
    """Maximal runs of consecutive channels sharing one offset: (start, stop, dy, dx)."""
    runs: list[tuple[int, int, int, int]] = []
    for c, (dy, dx) in enumerate(offsets):
        if runs and runs[-1][1] == c and runs[-1][2:] == (dy, dx):
            runs[-1] = (runs[-1][0], c + 1, dy, dx)
        else:
            runs.append((c, c + 1, int(dy), int(dx)))
    return runs


def index_runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive increasing indices, ``(start, stop)``: ``indices`` is
    the concatenation of ``range(start, stop)`` over the runs."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        i = int(i)
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def scc_gather_indices(in_channels: int, out_channels: int, groups: int, overlap: float) -> tuple[int, ...]:
    """The input channels a sliding-channel conv reads, window after window: entry
    ``c * U + u`` is ``(start_c + u) mod C_in`` (:func:`scc_window_starts`)."""
    width = in_channels // groups
    return tuple(
        (start + u) % in_channels
        for start in scc_window_starts(in_channels, out_channels, groups, overlap)
        for u in range(width)
    )


class GraphBuilder:
    """Builds a :class:`Graph` node by node, inferring shapes as it goes.

    The layer helpers (``conv2d``, ``batchnorm``, ``linear``) create their own ``param``
    and ``const`` nodes named ``<name>.weight``, ``<name>.bias``, ``<name>.gamma`` ...
    """

    def __init__(self) -> None:
        self._nodes: list[Node] = []
        self._shapes: dict[str, Shape] = {}
        self._counts: dict[str, int] = {}

    # -- generic --------------------------------------------------------------------
    def unique(self, prefix: str) -> str:
        """A fresh node name starting with ``prefix``."""
        while True:
            k = self._counts.get(prefix, 0)
            self._counts[prefix] = k + 1
            name = prefix if k == 0 else f"{prefix}_{k}"
            if name not in self._shapes:
                return name

    def add(self, op: str, inputs: Iterable[str] = (), name: str | None = None, **attrs: Any) -> str:
        """Append a node; returns its name."""
        if op not in OPS:
            raise GraphError(f"unknown op {op!r}")
        inputs = tuple(inputs)
        for i in inputs:
            if i not in self._shapes:
                raise GraphError(f"{op}: input {i!r} is not defined")
        name = name or self.unique(op)
        if name in self._shapes:
            raise GraphError(f"duplicate node name {name!r}")
        shape = infer_shape(op, [self._shapes[i] for i in inputs], attrs)
        self._nodes.append(Node(name, op, inputs, dict(attrs), shape))
        self._shapes[name] = shape
        return name

    def shape(self, name: str) -> Shape:
        return self._shapes[name]

    def build(self, outputs: Iterable[str]) -> Graph:
        return Graph(tuple(self._nodes), tuple(outputs))

    # -- sources --------------------------------------------------------------------
    def input(self, name: str, shape: Sequence[int]) -> str:
        return self.add("input", name=name, shape=tuple(shape))

    def param(self, name: str, shape: Sequence[int], init: str, fan_in: int = 1) -> str:
        if init not in INITS:
            raise GraphError(f"unknown initialiser {init!r}")
        return self.add("param", name=name, shape=tuple(shape), init=init, fan_in=fan_in)

    def const(
        self, name: str, shape: Sequence[int], init: str | None = None, value: Any = None
    ) -> str:
        """A non-trainable tensor, drawn with ``init`` or given as ``value``."""
        if (init is None) == (value is None):
            raise GraphError("const needs exactly one of init or value")
        if value is not None:
            value = np.asarray(value, dtype=np.float64)
            if value.shape != tuple(shape):
                raise GraphError(f"const {name}: value shape {value.shape} != {tuple(shape)}")
            value.setflags(write=False)
        return self.add("const", name=name, shape=tuple(shape), init=init, value=value)

    # -- layers ---------------------------------------------------------------------
    def conv2d(
        self,
        x: str,
        out_channels: int,
        kernel: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | None = None,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = False,
        name: str | None = None,
    ) -> str:
        """Convolution with its own weight (and bias); padding defaults to 'same' for odd k."""
        kh, kw = _pair(kernel)
        dh, dw = _pair(dilation)
        if padding is None:
            padding = (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
        name = name or self.unique("conv")
        c_in = self.shape(x)[1]
        if c_in % groups:
            raise GraphError(f"{name}: {c_in} input channels not divisible by groups {groups}")
        fan_in = c_in // groups * kh * kw
        w = self.param(f"{name}.weight", (out_channels, c_in // groups, kh, kw), "he_normal", fan_in)
        inputs = [x, w]
        if bias:
            inputs.append(self.param(f"{name}.bias", (out_channels,), "fan_in_uniform", fan_in))
        return self.add(
            "conv2d",
            inputs,
            name=name,
            stride=_pair(stride),
            padding=_pair(padding),
            dilation=(dh, dw),
            groups=groups,
        )

    def batchnorm(self, x: str, eps: float = 1e-5, momentum: float = 0.1, name: str | None = None) -> str:
        name = name or self.unique("bn")
        c = self.shape(x)[1]
        gamma = self.param(f"{name}.gamma", (c,), "bn_gamma")
        beta = self.param(f"{name}.beta", (c,), "bn_beta")
        mean = self.const(f"{name}.running_mean", (c,), init="running_mean")
        var = self.const(f"{name}.running_var", (c,), init="running_var")
        return self.add("batchnorm", [x, gamma, beta, mean, var], name=name, eps=eps, momentum=momentum)

    def linear(self, x: str, out_features: int, bias: bool = True, name: str | None = None) -> str:
        name = name or self.unique("fc")
        fan_in = self.shape(x)[1]
        w = self.param(f"{name}.weight", (out_features, fan_in), "he_normal", fan_in)
        inputs = [x, w]
        if bias:
            inputs.append(self.param(f"{name}.bias", (out_features,), "fan_in_uniform", fan_in))
        return self.add("linear", inputs, name=name)

    def reshape(self, x: str, shape: Sequence[int], name: str | None = None) -> str:
        return self.add("reshape", [x], name=name, shape=tuple(int(d) for d in shape))

    def transpose(self, x: str, perm: Sequence[int], name: str | None = None) -> str:
        return self.add("transpose", [x], name=name, perm=tuple(int(a) for a in perm))

    def pad(self, x: str, pads: Sequence[Sequence[int]], name: str | None = None) -> str:
        return self.add("pad", [x], name=name, pads=tuple((int(a), int(b)) for a, b in pads))

    def shift(self, x: str, offsets: Sequence[Sequence[int]], name: str | None = None) -> str:
        return self.add("shift", [x], name=name, offsets=tuple((int(a), int(b)) for a, b in offsets))

    def gather(self, x: str, axis: int, indices: Sequence[int], name: str | None = None) -> str:
        return self.add("gather", [x], name=name, axis=int(axis), indices=tuple(int(i) for i in indices))

    def upsample(self, x: str, scale: int | Sequence[int], name: str | None = None) -> str:
        """Nearest-neighbour upsampling of ``x`` by ``scale`` (an int or (sh, sw))."""
        if isinstance(scale, (int, np.integer)):
            scale = (scale, scale)
        return self.add("upsample", [x], name=name, scale=tuple(scale))

    def prelu(self, x: str, name: str | None = None) -> str:
        """PReLU of ``x`` with one learnable slope per channel, the param ``<name>.slope``
        (C,) (init ``prelu_slope``)."""
        name = name or self.unique(f"{x}.prelu")
        slope = self.param(f"{name}.slope", (self.shape(x)[1],), "prelu_slope")
        return self.add("prelu", [x, slope], name=name)

    def mixconv(
        self,
        x: str,
        kernels: Sequence[int],
        stride: int = 1,
        bias: bool = False,
        name: str | None = None,
    ) -> str:
        """MixConv of ``x`` (module docstring): group i, of :func:`mixconv_splits` channels,
        a depthwise conv with kernel ``kernels[i]``, named ``<name>.g<i>``; the outputs
        concatenated as ``<name>``. One kernel gives one depthwise conv named ``<name>``."""
        name = name or self.unique("mixconv")
        if any(k < 1 or k % 2 == 0 for k in kernels):
            raise GraphError(f"{name}: mixconv kernels must be odd and positive, got {tuple(kernels)}")
        c = self.shape(x)[1]
        splits = mixconv_splits(c, len(kernels))
        if len(kernels) == 1:
            return self.conv2d(x, c, kernels[0], stride=stride, groups=c, bias=bias, name=name)
        outs, start = [], 0
        for i, (k, size) in enumerate(zip(kernels, splits, strict=True)):
            part = self.add("slice", [x], name=f"{name}.g{i}.in", axis=1, start=start, stop=start + size)
            outs.append(self.conv2d(part, size, k, stride=stride, groups=size, bias=bias, name=f"{name}.g{i}"))
            start += size
        return self.add("concat", outs, name=name, axis=1)

    def channel_maxpool(self, x: str, group: int, name: str | None = None) -> str:
        """Maximum over each group of ``group`` adjacent channels (module docstring)."""
        name = name or self.unique("channel_maxpool")
        n, c, h, w = self.shape(x)
        if group < 1 or c % group:
            raise GraphError(f"{name}: {c} channels are not groups of {group}")
        flat = self.reshape(x, (n, 1, c, h * w), name=f"{name}.flat")
        pooled = self.add(
            "maxpool", [flat], name=f"{name}.max", kernel=(group, 1), stride=(group, 1), padding=(0, 0)
        )
        return self.reshape(pooled, (n, c // group, h, w), name=name)

    def eca(self, x: str, kernel: int, name: str | None = None) -> str:
        """ECA channel attention of ``x`` with a 1-D kernel ``kernel`` across channels
        (module docstring); the conv's weight is ``<name>.conv.weight``, (1, 1, k, 1)."""
        name = name or self.unique("eca")
        if kernel < 1 or kernel % 2 == 0:
            raise GraphError(f"{name}: the ECA kernel must be odd and positive, got {kernel}")
        n, c = self.shape(x)[:2]
        pooled = self.add("global_avgpool", [x], name=f"{name}.pool")
        row = self.reshape(pooled, (n, 1, c, 1), name=f"{name}.row")
        conv = self.conv2d(row, 1, (kernel, 1), padding=((kernel - 1) // 2, 0), name=f"{name}.conv")
        gate = self.add("sigmoid", [self.reshape(conv, (n, c, 1, 1), name=f"{name}.col")], name=f"{name}.gate")
        return self.add("mul", [x, gate], name=name)

    def sliding_channel_conv(
        self,
        x: str,
        out_channels: int,
        groups: int,
        overlap: float,
        bias: bool = False,
        form: str = "masked",
        name: str | None = None,
    ) -> str:
        """DSXplore's sliding-channel 1x1 conv as one dense conv (module docstring).

        ``masked``: weight ``<name>.weight`` (C_out, C_in, 1, 1) times the const
        ``<name>.mask``. ``compact``: the trainable weight is the SCC's own (C_out, U),
        scattered into the dense weight with existing ops: ``reshape`` (C_out, 1, U, 1),
        ``mul`` by a const (C_out, 1, U, C_in) holding U where input channel i is entry u
        of channel c's window, ``avgpool`` over U (the sum / U), ``reshape``. ``gather``:
        ``<name>.gather`` takes the windows' C_out * U channels
        (:func:`scc_gather_indices`), then ``<name>`` is a 1x1 conv with C_out groups and
        the weight ``<name>.weight`` (C_out, U, 1, 1), entry (c, u) the masked form's
        (c, (start_c + u) mod C_in). He init uses the fan-in a window sees,
        ``C_in / groups``."""
        name = name or self.unique("scc")
        c_in = self.shape(x)[1]
        width = c_in // groups
        if form == "gather":
            if c_in % groups:
                raise GraphError(f"{name}: {c_in} input channels are not {groups} groups")
            taken = self.gather(x, 1, scc_gather_indices(c_in, out_channels, groups, overlap), name=f"{name}.gather")
            w = self.param(f"{name}.weight", (out_channels, width, 1, 1), "he_normal", width)
            inputs = [taken, w]
            if bias:
                inputs.append(self.param(f"{name}.bias", (out_channels,), "fan_in_uniform", width))
            return self.add(
                "conv2d", inputs, name=name, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=out_channels
            )
        mask = scc_mask(c_in, out_channels, groups, overlap)
        if form == "masked":
            w = self.param(f"{name}.weight", mask.shape, "he_normal", width)
            m = self.const(f"{name}.mask", mask.shape, value=mask)
            dense = self.add("mul", [w, m], name=f"{name}.masked_weight")
        elif form == "compact":
            w = self.param(f"{name}.weight", (out_channels, width), "he_normal", width)
            scatter = np.zeros((out_channels, 1, width, c_in))
            for c, start in enumerate(scc_window_starts(c_in, out_channels, groups, overlap)):
                scatter[c, 0, np.arange(width), (start + np.arange(width)) % c_in] = width
            s = self.const(f"{name}.scatter", scatter.shape, value=scatter)
            spread = self.add("mul", [self.reshape(w, (out_channels, 1, width, 1), name=f"{name}.w4"), s], name=f"{name}.spread")
            summed = self.add("avgpool", [spread], name=f"{name}.sum", kernel=(width, 1), stride=(width, 1), padding=(0, 0))
            dense = self.reshape(summed, mask.shape, name=f"{name}.dense_weight")
        else:
            raise GraphError(f"{name}: unknown scc form {form!r}")
        inputs = [x, dense]
        if bias:
            inputs.append(self.param(f"{name}.bias", (out_channels,), "fan_in_uniform", c_in // groups))
        return self.add("conv2d", inputs, name=name, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1)

    def act(self, x: str, kind: str | None) -> str:
        """Apply an activation by name (``relu``, ``relu6``, ``sigmoid``) or none."""
        if kind is None or kind == "none":
            return x
        return self.add(kind, [x], name=self.unique(f"{x}.{kind}"))

    def pool(
        self,
        x: str,
        kind: str,
        kernel: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
    ) -> str:
        """``avgpool`` (padding excluded from the average) or ``maxpool`` (pads with -inf)."""
        kernel = _pair(kernel)
        return self.add(
            kind,
            [x],
            kernel=kernel,
            stride=_pair(stride if stride is not None else kernel),
            padding=_pair(padding),
        )
