"""Variants: framework-independent graph rewrites that compute the same function.

A variant is named in suites by a label: a name, optionally with arguments,
``diagonalwise(group_size=16)``, or several joined by ``+`` and applied left to right,
``onehot+diagonalwise`` (the shifts become one-hot depthwise convs, which diagonalwise
then rewrites). Every rewrite keeps the names and shapes of the graph's inputs,
parameters and outputs, so every variant runs on the very same weights and is verified
against the same reference; the one exception, ``diagonalwise(param=expanded)``, replaces
each depthwise weight by an expanded parameter drawn from the very same compact values
(:mod:`convbench.data`) and maps that parameter's gradient back to the compact weight's
(:func:`native_gradients`) before verification. A variant (or a step of a chain) that
finds nothing to rewrite does not apply, and its case is skipped.

The rewrites (``native`` changes nothing):

* ``diagonalwise`` (depthwise convs), below;
* ``blockdiag`` (group convs that are not depthwise: 1 < groups < C_in): the conv becomes
  one dense conv (groups = 1) whose (C_out, C_in, kh, kw) weight is block-diagonal: the
  trainable (C_out, C_in/g, kh, kw) weight is reshaped to (g, C_out/g, 1, C_in/g, kh, kw),
  multiplied by a fixed 0/1 mask of shape (g, 1, g, 1, 1, 1) holding the g x g identity
  (which broadcasts it into the off-diagonal blocks as zeros) and reshaped to
  (C_out, C_in, kh, kw). As in diagonalwise, gradients reach only the real weight;
* ``split`` (every conv with groups > 1, depthwise included): g convs, one per group, on
  channel slices of the input with slices of the weight (and bias), concatenated: what
  Caffe did, the slow baseline of arXiv 1803.09926;
* ``slice`` (``shift``): each run of channels sharing an offset is sliced out, cropped
  in height and width and zero-padded back (``slice``, ``slice``, ``slice``, ``pad``),
  and the runs are concatenated;
* ``onehot`` (``shift``): a depthwise conv (stride 1, padding p = the largest |offset|,
  kernel 2p + 1) with a fixed one-hot weight: channel c's kernel is 1 at (p - dy_c,
  p - dx_c). It counts the multiply-adds it executes, C * H * W * (2p + 1)^2 per sample.
* ``kernel`` (depthwise convs, ``shift`` and address shifts): a *backend-implemented* variant. Its graph
  rewrite is the identity; the backend runs its own hand-written kernels for the nodes
  it names (the torch backend: Triton, :mod:`convbench_torch.kernels`) and records in
  the case's details which nodes ran them. A backend without such kernels skips it.

``diagonalwise`` (Qin et al. 2018, arXiv 1803.09926) replaces each depthwise conv
(groups = C_in > 1) by a standard conv with a (block-)diagonal weight: the C input
channels are split into groups of G = min(group_size, C) consecutive channels; the
trainable depthwise weight (C*m, 1, k, k) is multiplied (broadcast over its second axis)
by a fixed 0/1 mask of shape (C*m, G, 1, 1), one for the whole layer
(:func:`diagonal_mask`: output channel o reads, within its group, input
(o mod G*m) // m), into a (C*m, G, k, k) weight that is zero off each group's diagonal,
and one grouped conv with C / G groups runs them all (one dense conv when G = C). The mask
multiplication is part of the graph, so in training gradients flow only into the real
depthwise weight. When C is not a multiple of G, the last r = C mod G channels form a
smaller group: by default (``remainder=split``) the rewrite slices the input and weight
into the C - r channels of full groups and the r remaining ones, runs one conv on each,
and concatenates the outputs (an extra conv, two slices and a concat per such layer);
``remainder=pad`` instead appends G - r zero channels to the input and the weight, runs
one grouped conv over full groups and keeps the first C output channels (one conv, more
arithmetic on zeros).

``param`` says which tensor is the trainable parameter. ``param=compact`` (the default)
keeps the compact (C*m, 1, k, k) depthwise weight and expands it by the mask in the
graph, as above. ``param=expanded`` is the authors' PyTorch form: the parameter is the
expanded (C*m, G, k, k) tensor itself, named ``<weight>.expanded``, initialised to the
compact weight times the mask (so its off-diagonal entries are zero and the outputs are
the compact form's), and multiplied by the mask in every forward; its gradient is the
masked gradient of the conv weight, zero off the diagonal, so plain SGD keeps it
block-diagonal. The two differ in the work around the conv: with ``compact`` the weight
gradient is one more reduction (the backward of the mask's broadcast sums the
(C*m, G, k, k) masked gradient over G: a gather of the expanded form's gradient, its
diagonal entries) and the optimizer updates C*m k^2 values; with ``expanded`` there is no
such reduction but the optimizer updates C*m G k^2 values (G times as many, zeros
included), and the graph holds that many more parameters. Verification compares the
expanded parameter's gradient through its diagonal entries (:func:`native_gradients`),
against the float64 reference of the original graph; the off-diagonal entries are not
compared. With a remainder, the expanded parameter is one (C*m, G, k, k) tensor for the
whole layer: the last, smaller group reads its first r columns (``remainder=split``), or
the masked weight is zero-padded (``remainder=pad``). A depthwise weight that is not a
``param`` (a const: ``onehot``'s one-hot kernels) or that another node reads too keeps
the compact form.

How the authors ran it (qinzheng93/diagonalwise-refactorization-*), in convbench's terms:
PyTorch, groups = max(C / 32, 1), the expanded (C, 32, k, k) tensor as the trainable
parameter, masked in every forward: ``diagonalwise(param=expanded)``; ``diagonalwise``
runs the same convs with the compact parameter (the same function and the same gradient
on the real weights; the smaller update and the extra reduction above). Caffe, one
dense C x C conv with the weight gradient masked after backward:
``diagonalwise(group_size=N)`` with N >= the widest layer (the mask in the forward
instead of on the gradient); TensorFlow, the input split into groups, each with its own
masked G x G conv, concatenated: ``diagonalwise+split`` (run as a graph, not XLA).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from convbench.backend import declarations
from convbench.graph import Graph, GraphBuilder, Node, shift_runs

Rewrite = Callable[[Graph, dict[str, Any]], Graph]


@dataclass(frozen=True)
class VariantKind:
    """A named rewrite with its default arguments."""

    name: str
    rewrite: Rewrite
    defaults: dict[str, Any]
    description: str
    applies_to: Callable[[Node, Graph], bool] | None = None  #: nodes it changes; None: none
    choices: dict[str, tuple[str, ...]] | None = None  #: the values a text argument may take

    def changes(self, graph: Graph) -> bool:
        """Whether the rewrite changes anything in ``graph``."""
        return self.applies_to is None or any(self.applies_to(n, graph) for n in graph.nodes)


@dataclass(frozen=True)
class Variant:
    """A variant kind with concrete arguments."""

    kind: VariantKind
    args: tuple[tuple[str, Any], ...]

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def label(self) -> str:
        """Canonical label: the name, plus the arguments that differ from the defaults."""
        changed = [(k, v) for k, v in self.args if self.kind.defaults.get(k) != v]
        if not changed:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in changed)})"

    def apply(self, graph: Graph) -> Graph:
        return self.kind.rewrite(graph, dict(self.args))

    def applies(self, graph: Graph) -> bool:
        """False when the rewrite would leave ``graph`` as it is (nothing to rewrite)."""
        return self.kind.name == "native" or self.kind.changes(graph)


def is_depthwise(node: Node, graph: Graph) -> bool:
    """A conv2d whose groups equal its input channels (more than one)."""
    if node.op != "conv2d":
        return False
    c_in = graph.shape(node.inputs[0])[1]
    return c_in > 1 and node.attrs["groups"] == c_in


def is_group_conv(node: Node, graph: Graph) -> bool:
    """A conv2d with 1 < groups < its input channels (a group conv that is not depthwise)."""
    if node.op != "conv2d":
        return False
    return 1 < node.attrs["groups"] < graph.shape(node.inputs[0])[1]


def is_grouped(node: Node, graph: Graph) -> bool:
    """A conv2d with groups > 1 (group or depthwise)."""
    return node.op == "conv2d" and node.attrs["groups"] > 1


def is_shift(node: Node, graph: Graph) -> bool:
    return node.op == "shift"


def copy_node(b: GraphBuilder, node: Node) -> str:
    """Re-emit ``node`` unchanged into ``b``."""
    return b.add(node.op, node.inputs, name=node.name, **node.attrs)


def diagonal_mask(channels: int, group: int, multiplier: int) -> np.ndarray:
    """0/1 mask (channels*m, group, 1, 1) for ``channels`` split into groups of ``group``:
    output o reads, within its group, input (o mod (group*m)) // m."""
    out = (np.arange(channels * multiplier) % (group * multiplier))[:, None] // multiplier
    return (out == np.arange(group)[None, :]).astype(np.float64)[:, :, None, None]


def _masked_conv(
    b: GraphBuilder, node: Node, x: str, w: str, bias: str | None, group: int, m: int, name: str | None
) -> str:
    """One conv over ``x`` (channels in groups of ``group``) with a mask-expanded weight."""
    c = b.shape(x)[1]
    mask = b.const(b.unique(f"{node.name}.mask"), (c * m, group, 1, 1), value=diagonal_mask(c, group, m))
    wd = b.add("mul", [w, mask], name=b.unique(f"{node.name}.diag_weight"))
    inputs = [x, wd] + ([bias] if bias else [])
    attrs = {k: v for k, v in node.attrs.items() if k != "groups"}
    return b.add("conv2d", inputs, name=name or b.unique(f"{node.name}.part"), groups=c // group, **attrs)


def _pad_remainder(
    b: GraphBuilder,
    node: Node,
    x: str,
    w: str,
    bias: str | None,
    c: int,
    group: int,
    m: int,
    conv: Callable[[str, str, str | None], str],
) -> None:
    """``remainder=pad`` of a depthwise conv whose C channels do not fill whole groups: the
    input padded with zero channels up to whole groups, the weight ``w`` (and bias) padded
    alike along their C*m output channels, one grouped conv ``conv(x, w, bias)`` over
    them, then its first C*m output channels as ``node.name``. The padded channels are
    zeros, so the function is the same; the gradient of the padding is dropped by the
    pads' backward."""
    extra = group - c % group
    xp = b.pad(x, [(0, 0), (0, extra), (0, 0), (0, 0)], name=b.unique(f"{node.name}.x_padded"))
    wp = b.pad(w, [(0, extra * m), (0, 0), (0, 0), (0, 0)], name=b.unique(f"{node.name}.w_padded"))
    bp = b.pad(bias, [(0, extra * m)], name=b.unique(f"{node.name}.b_padded")) if bias else None
    y = conv(xp, wp, bp)
    b.add("slice", [y], name=node.name, axis=1, start=0, stop=c * m)


def _expanded_weights(graph: Graph) -> set[str]:
    """The depthwise weights ``param=expanded`` replaces: ``param`` nodes read by one
    depthwise conv and by nothing else."""
    readers: dict[str, int] = {}
    for node in graph.nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    return {
        n.inputs[1]
        for n in graph.nodes
        if is_depthwise(n, graph) and graph[n.inputs[1]].op == "param" and readers[n.inputs[1]] == 1
    }


def _expanded_masked_weight(b: GraphBuilder, node: Node, compact: Node, c: int, group: int, m: int) -> str:
    """``param=expanded``: the (C*m, G, kh, kw) parameter ``<weight>.expanded`` (drawn by
    :mod:`convbench.data` as the compact weight times the mask: attributes ``expands``,
    ``compact_shape`` and ``mask``) and its product with the mask, the conv's weight."""
    kh, kw = compact.shape[2:]
    mask = b.const(b.unique(f"{node.name}.mask"), (c * m, group, 1, 1), value=diagonal_mask(c, group, m))
    expanded = b.add(
        "param",
        name=b.unique(f"{compact.name}.expanded"),
        shape=(c * m, group, kh, kw),
        init=compact.attrs["init"],
        fan_in=compact.attrs.get("fan_in", 1),
        expands=compact.name,
        compact_shape=tuple(compact.shape),
        mask=mask,
    )
    return b.add("mul", [expanded, mask], name=b.unique(f"{node.name}.diag_weight"))


def _conv(b: GraphBuilder, node: Node, x: str, w: str, bias: str | None, group: int, name: str | None) -> str:
    """One conv over ``x`` (channels in groups of ``group``) with the masked weight ``w``."""
    inputs = [x, w] + ([bias] if bias else [])
    return b.add("conv2d", inputs, name=name or b.unique(f"{node.name}.part"), groups=b.shape(x)[1] // group, **_conv_attrs(node))


def _split_remainder(
    b: GraphBuilder,
    node: Node,
    x: str,
    w: str,
    bias: str | None,
    c: int,
    group: int,
    m: int,
    part: Callable[[str, str, str | None, int], str],
    trim_columns: bool = False,
) -> None:
    """``remainder=split`` of a depthwise conv whose C channels (``c % group`` = r > 0) do
    not fill whole groups: the input cut into its C - r full-group channels and its last
    r, the weight ``w`` (and bias) cut alike along their C*m output channels, one part per
    piece from ``part(x_slice, w_slice, b_slice, group_size)`` (the last part's group
    size is r), and the parts concatenated as ``node.name``. ``trim_columns``: ``w`` is a
    masked (C*m, group, kh, kw) weight, so the last part's is cut to its first r columns,
    where its diagonal lies."""
    rest = c % group
    full = c - rest
    parts = []
    for lo, hi, size in ((0, full, group), (full, c, rest)):
        xs = b.add("slice", [x], name=b.unique(f"{node.name}.x"), axis=1, start=lo, stop=hi)
        ws = b.add("slice", [w], name=b.unique(f"{node.name}.w"), axis=0, start=lo * m, stop=hi * m)
        if trim_columns and size < group:
            ws = b.add("slice", [ws], name=b.unique(f"{node.name}.w"), axis=1, start=0, stop=size)
        bs = None
        if bias:
            bs = b.add("slice", [bias], name=b.unique(f"{node.name}.b"), axis=0, start=lo * m, stop=hi * m)
        parts.append(part(xs, ws, bs, size))
    b.add("concat", parts, name=node.name, axis=1)


def _expanded_diagonalwise(b: GraphBuilder, node: Node, graph: Graph, group: int, pad_remainder: bool) -> None:
    """One depthwise conv with ``param=expanded``: the same convs as the compact form,
    their weights cut from one masked (C*m, G, kh, kw) tensor."""
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) == 3 else None
    c = graph.shape(x)[1]
    m = graph.shape(w)[0] // c
    wd = _expanded_masked_weight(b, node, graph[w], c, group, m)
    rest = c % group
    if rest == 0:
        _conv(b, node, x, wd, bias, group, node.name)
        return
    if pad_remainder:
        _pad_remainder(b, node, x, wd, bias, c, group, m, lambda xp, wp, bp: _conv(b, node, xp, wp, bp, group, None))
        return
    _split_remainder(
        b, node, x, wd, bias, c, group, m,
        lambda xs, ws, bs, size: _conv(b, node, xs, ws, bs, size, None),
        trim_columns=True,
    )  # fmt: skip


def diagonalwise(graph: Graph, args: dict[str, Any]) -> Graph:
    """Rewrite every depthwise conv as grouped standard convs with diagonal weights."""
    group_size = int(args["group_size"])
    pad_remainder = args.get("remainder", "split") == "pad"
    expand = _expanded_weights(graph) if args.get("param", "compact") == "expanded" else set()
    b = GraphBuilder()
    for node in graph.nodes:
        if node.name in expand:
            continue  # replaced by its expanded parameter, made at its conv
        if not is_depthwise(node, graph):
            copy_node(b, node)
            continue
        x, w = node.inputs[0], node.inputs[1]
        bias = node.inputs[2] if len(node.inputs) == 3 else None
        c = graph.shape(x)[1]
        m = graph.shape(w)[0] // c
        g = min(group_size, c)
        if w in expand:
            _expanded_diagonalwise(b, node, graph, g, pad_remainder)
            continue
        rest = c % g
        if rest == 0:
            _masked_conv(b, node, x, w, bias, g, m, node.name)
            continue
        if pad_remainder:
            _pad_remainder(b, node, x, w, bias, c, g, m, lambda xp, wp, bp: _masked_conv(b, node, xp, wp, bp, g, m, None))  # noqa: B023 (called at once)
            continue
        _split_remainder(
            b, node, x, w, bias, c, g, m,
            lambda xs, ws, bs, size: _masked_conv(b, node, xs, ws, bs, size, m, None),  # noqa: B023 (called at once)
        )  # fmt: skip
    return b.build(graph.outputs)


def native_gradients(executed: Graph, got: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``got`` (a backend's check of ``executed``) with the gradient of each expanded
    parameter (``diagonalwise(param=expanded)``) replaced by the gradient of the compact
    weight it stands for: its diagonal entries, ``g[o, (o mod G*m) // m]``, the entries the
    mask keeps. Other keys, and a graph without expanded parameters, are left as they are."""
    out = dict(got)
    for node in executed.params:
        key = f"grad:{node.name}"
        if "expands" not in node.attrs or key not in out:
            continue
        grad = np.asarray(out.pop(key))
        mask = np.asarray(executed[node.attrs["mask"]].attrs["value"])[:, :, 0, 0]
        column = mask.argmax(axis=1)[:, None, None, None]
        out[f"grad:{node.attrs['expands']}"] = np.take_along_axis(grad, column, axis=1)
    return out


def _conv_attrs(node: Node) -> dict[str, Any]:
    return {k: v for k, v in node.attrs.items() if k != "groups"}


def blockdiag(graph: Graph, args: dict[str, Any]) -> Graph:
    """Rewrite every group conv (not depthwise) as one dense conv with a block-diagonal weight."""
    b = GraphBuilder()
    for node in graph.nodes:
        if not is_group_conv(node, graph):
            copy_node(b, node)
            continue
        w = node.inputs[1]
        o, cg, kh, kw = graph.shape(w)
        g = node.attrs["groups"]
        blocks = b.reshape(w, (g, o // g, 1, cg, kh, kw), name=b.unique(f"{node.name}.w_blocks"))
        eye = np.eye(g).reshape(g, 1, g, 1, 1, 1)
        mask = b.const(b.unique(f"{node.name}.mask"), eye.shape, value=eye)
        masked = b.add("mul", [blocks, mask], name=b.unique(f"{node.name}.w_masked"))
        dense = b.reshape(masked, (o, cg * g, kh, kw), name=b.unique(f"{node.name}.blockdiag_weight"))
        inputs = [node.inputs[0], dense, *node.inputs[2:]]
        b.add("conv2d", inputs, name=node.name, groups=1, **_conv_attrs(node))
    return b.build(graph.outputs)


def split(graph: Graph, args: dict[str, Any]) -> Graph:
    """Rewrite every conv with groups > 1 as one conv per group on channel slices, concatenated."""
    b = GraphBuilder()
    for node in graph.nodes:
        if not is_grouped(node, graph):
            copy_node(b, node)
            continue
        x, w = node.inputs[0], node.inputs[1]
        bias = node.inputs[2] if len(node.inputs) == 3 else None
        g = node.attrs["groups"]
        cg, og = graph.shape(x)[1] // g, graph.shape(w)[0] // g
        parts = []
        for i in range(g):
            pre = f"{node.name}.g{i}"
            inputs = [
                b.add("slice", [x], name=b.unique(f"{pre}.x"), axis=1, start=i * cg, stop=(i + 1) * cg),
                b.add("slice", [w], name=b.unique(f"{pre}.w"), axis=0, start=i * og, stop=(i + 1) * og),
            ]
            if bias:
                inputs.append(b.add("slice", [bias], name=b.unique(f"{pre}.b"), axis=0, start=i * og, stop=(i + 1) * og))
            parts.append(b.add("conv2d", inputs, name=b.unique(pre), groups=1, **_conv_attrs(node)))
        b.add("concat", parts, name=node.name, axis=1)
    return b.build(graph.outputs)


def shift_by_slices(graph: Graph, args: dict[str, Any]) -> Graph:
    """Rewrite every shift as slices, zero pads and one concat (the ``slice`` variant)."""
    b = GraphBuilder()
    for node in graph.nodes:
        if not is_shift(node, graph):
            copy_node(b, node)
            continue
        x = node.inputs[0]
        n, _, height, width = graph.shape(x)
        parts = []
        for start, stop, dy, dx in shift_runs(node.attrs["offsets"]):
            pre = f"{node.name}.c{start}"
            y = b.add("slice", [x], name=b.unique(pre), axis=1, start=start, stop=stop)
            pads = [(0, 0), (0, 0), (0, 0), (0, 0)]
            for axis, d, size in ((2, dy, height), (3, dx, width)):
                if d:  # keep the rows (columns) that stay in the plane, pad the vacated ones
                    y = b.add("slice", [y], name=b.unique(f"{pre}.crop"), axis=axis, start=max(0, -d), stop=size - max(0, d))
                    pads[axis] = (max(0, d), max(0, -d))
            if dy or dx:
                y = b.pad(y, pads, name=b.unique(f"{pre}.pad"))
            parts.append(y)
        b.add("concat", parts, name=node.name, axis=1)
    return b.build(graph.outputs)


def onehot_kernels(offsets: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Depthwise weight (C, 1, 2p+1, 2p+1), p the largest |offset|: a 1 at (p - dy, p - dx)."""
    p = max((max(abs(dy), abs(dx)) for dy, dx in offsets), default=0)
    w = np.zeros((len(offsets), 1, 2 * p + 1, 2 * p + 1))
    for c, (dy, dx) in enumerate(offsets):
        w[c, 0, p - dy, p - dx] = 1.0
    return w


def onehot(graph: Graph, args: dict[str, Any]) -> Graph:
    """Rewrite every shift as a depthwise conv with fixed one-hot kernels."""
    b = GraphBuilder()
    for node in graph.nodes:
        if not is_shift(node, graph):
            copy_node(b, node)
            continue
        kernels = onehot_kernels(node.attrs["offsets"])
        w = b.const(b.unique(f"{node.name}.onehot_weight"), kernels.shape, value=kernels)
        p = kernels.shape[-1] // 2
        b.add("conv2d", [node.inputs[0], w], name=node.name, stride=(1, 1), padding=(p, p), dilation=(1, 1), groups=kernels.shape[0])
    return b.build(graph.outputs)


VARIANTS: dict[str, VariantKind] = {
    "native": VariantKind("native", lambda g, _: g, {}, "the framework's own ops"),
    "diagonalwise": VariantKind(
        "diagonalwise",
        diagonalwise,
        {"group_size": 32, "remainder": "split", "param": "compact"},
        "depthwise conv as a grouped standard conv with (block-)diagonal weights",
        is_depthwise,
        {"remainder": ("split", "pad"), "param": ("compact", "expanded")},
    ),
    "blockdiag": VariantKind(
        "blockdiag",
        blockdiag,
        {},
        "group conv as one dense conv with a masked block-diagonal weight",
        is_group_conv,
    ),
    "split": VariantKind(
        "split", split, {}, "grouped conv as one conv per group on channel slices, concatenated", is_grouped
    ),
    "slice": VariantKind("slice", shift_by_slices, {}, "shift as slices, zero pads and a concat", is_shift),
    "onehot": VariantKind("onehot", onehot, {}, "shift as a depthwise conv with one-hot kernels", is_shift),
    "kernel": VariantKind(
        "kernel",
        lambda g, _: g,
        {},
        "hand-written kernels for depthwise convs, shifts and address shifts (backend-implemented)",
        lambda node, graph: is_depthwise(node, graph) or node.op == "shift" or _is_address_shift(node, graph),
    ),
}

def _is_address_shift(node: Node, graph: Graph) -> bool:
    """The end of an address shift's slices and concat (convbench.workloads.shift)."""
    from convbench.workloads.shift import is_address_shift

    return node.op == "reshape" and is_address_shift(node, graph)


#: Variants a backend implements itself: their rewrite is the identity, and a backend that
#: has no implementation skips their cases (see each backend's ``skip_reason``). ``kernel``
#: is the core's; a plugin may define more (:attr:`convbench.backend.Backend.variant_kinds`,
#: :func:`backend_variants`).
BACKEND_VARIANTS = frozenset({"kernel"})


def plugin_variants() -> dict[str, VariantKind]:
    """The backend-implemented variant kinds the registered plugins define, by name (a
    name of :data:`VARIANTS` stays the core's; the first plugin to define one keeps it)."""
    found: dict[str, VariantKind] = {}
    for cls in declarations().values():
        for kind in cls.variant_kinds:
            if kind.name not in VARIANTS:
                found.setdefault(kind.name, kind)
    return found


def known_variants() -> dict[str, VariantKind]:
    """Every variant kind a label may name: :data:`VARIANTS`, then the plugins' own."""
    return {**VARIANTS, **plugin_variants()}


def backend_variants() -> frozenset[str]:
    """Names of the backend-implemented variants: the core's and the plugins'."""
    return BACKEND_VARIANTS | frozenset(plugin_variants())

_LABEL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$")


def _parse_value(text: str) -> Any:
    text = text.strip()
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text.strip("'\"")


@dataclass(frozen=True)
class VariantChain:
    """Variants applied left to right (label ``a+b``); applies when every step changes
    the graph it receives."""

    steps: tuple[Variant, ...]

    @property
    def name(self) -> str:
        return "+".join(v.name for v in self.steps)

    @property
    def label(self) -> str:
        return "+".join(v.label for v in self.steps)

    def apply(self, graph: Graph) -> Graph:
        for step in self.steps:
            graph = step.apply(graph)
        return graph

    def applies(self, graph: Graph) -> bool:
        for step in self.steps:
            if not step.applies(graph):
                return False
            graph = step.apply(graph)
        return True


def _split_top_level(label: str) -> list[str]:
    """``label`` split at the ``+`` signs outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(label):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "+" and depth == 0:
            parts.append(label[start:i])
            start = i + 1
    parts.append(label[start:])
    return parts


def parse_variant(label: str) -> Variant | VariantChain:
    """Parse ``name``, ``name(key=value, ...)`` or such labels joined by ``+``; ValueError
    with a readable message."""
    parts = _split_top_level(str(label))
    if len(parts) == 1:
        return _parse_one(parts[0])
    steps = tuple(_parse_one(p) for p in parts)
    if any(v.name == "native" for v in steps):
        raise ValueError(f"variant {label!r}: native cannot be chained (it changes nothing)")
    return VariantChain(steps)


def _parse_one(label: str) -> Variant:
    match = _LABEL.match(str(label))
    if not match:
        raise ValueError(f"malformed variant {label!r}: expected NAME or NAME(key=value, ...)")
    name, arg_text = match.group(1), match.group(2)
    kinds = known_variants()
    if name not in kinds:
        raise ValueError(f"unknown variant {name!r} (known: {', '.join(kinds)})")
    kind = kinds[name]
    args = dict(kind.defaults)
    for item in filter(None, (arg_text or "").split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in kind.defaults:
            known = ", ".join(kind.defaults) or "none"
            raise ValueError(f"variant {name}: bad argument {item.strip()!r} (arguments: {known})")
        default = kind.defaults[key]
        parsed = _parse_value(value)
        if type(parsed) is not type(default):
            raise ValueError(f"variant {name}: {key} must be {type(default).__name__}, got {value.strip()!r}")
        if isinstance(parsed, int) and parsed < 1:
            raise ValueError(f"variant {name}: {key} must be >= 1, got {parsed}")
        allowed = (kind.choices or {}).get(key)
        if allowed and parsed not in allowed:
            raise ValueError(f"variant {name}: {key} must be one of {', '.join(allowed)}, got {value.strip()!r}")
        args[key] = parsed
    return Variant(kind, tuple(sorted(args.items())))
