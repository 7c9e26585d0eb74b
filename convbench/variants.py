"""Variants: framework-independent graph rewrites that compute the same function.

A variant is named in suites by a label: ``native`` or ``diagonalwise``, optionally with
arguments, ``diagonalwise(group_size=16)``. Every rewrite keeps the names and shapes of
the graph's inputs, parameters and outputs, so every variant runs on the very same
weights and is verified against the same reference.

``diagonalwise`` (Qin et al. 2018, arXiv 1803.09926) replaces each depthwise conv
(groups = C_in > 1) by a standard conv with a (block-)diagonal weight: the C input
channels are split into groups of G = min(group_size, C) consecutive channels; for each
group the trainable depthwise weight (C*m, 1, k, k) is multiplied by a fixed 0/1 mask of
shape (G*m, G, 1, 1) into a (G*m, G, k, k) weight that is zero off the diagonal, and one
grouped conv with C / G groups runs them all (one dense conv when G = C). The mask
multiplication is part of the graph, so in training gradients flow only into the real
depthwise weight. When C is not a multiple of G, the last r = C mod G channels form a
smaller group: the rewrite slices the input and weight into the C - r channels of full
groups and the r remaining ones, runs one conv on each, and concatenates the outputs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from convbench.graph import Graph, GraphBuilder, Node

Rewrite = Callable[[Graph, dict[str, Any]], Graph]


@dataclass(frozen=True)
class VariantKind:
    """A named rewrite with its default arguments."""

    name: str
    rewrite: Rewrite
    defaults: dict[str, Any]
    description: str
    applies_to: Callable[[Node, Graph], bool] | None = None  #: nodes it changes; None: none

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


def diagonalwise(graph: Graph, args: dict[str, Any]) -> Graph:
    """Rewrite every depthwise conv as grouped standard convs with diagonal weights."""
    group_size = int(args["group_size"])
    b = GraphBuilder()
    for node in graph.nodes:
        if not is_depthwise(node, graph):
            copy_node(b, node)
            continue
        x, w = node.inputs[0], node.inputs[1]
        bias = node.inputs[2] if len(node.inputs) == 3 else None
        c = graph.shape(x)[1]
        m = graph.shape(w)[0] // c
        g = min(group_size, c)
        rest = c % g
        if rest == 0:
            _masked_conv(b, node, x, w, bias, g, m, node.name)
            continue
        full = c - rest
        parts = []
        for lo, hi, size in ((0, full, g), (full, c, rest)):
            xs = b.add("slice", [x], name=b.unique(f"{node.name}.x"), axis=1, start=lo, stop=hi)
            ws = b.add("slice", [w], name=b.unique(f"{node.name}.w"), axis=0, start=lo * m, stop=hi * m)
            bs = None
            if bias:
                bs = b.add("slice", [bias], name=b.unique(f"{node.name}.b"), axis=0, start=lo * m, stop=hi * m)
            parts.append(_masked_conv(b, node, xs, ws, bs, size, m, None))
        b.add("concat", parts, name=node.name, axis=1)
    return b.build(graph.outputs)


VARIANTS: dict[str, VariantKind] = {
    "native": VariantKind("native", lambda g, _: g, {}, "the framework's own ops"),
    "diagonalwise": VariantKind(
        "diagonalwise",
        diagonalwise,
        {"group_size": 32},
        "depthwise conv as a grouped standard conv with (block-)diagonal weights",
        is_depthwise,
    ),
}

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


def parse_variant(label: str) -> Variant:
    """Parse ``name`` or ``name(key=value, ...)``; ValueError with a readable message."""
    match = _LABEL.match(str(label))
    if not match:
        raise ValueError(f"malformed variant {label!r}: expected NAME or NAME(key=value, ...)")
    name, arg_text = match.group(1), match.group(2)
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})")
    kind = VARIANTS[name]
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
        args[key] = parsed
    return Variant(kind, tuple(sorted(args.items())))
