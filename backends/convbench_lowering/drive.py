"""The table-driven lowering loop shared by the plugin backends.

A backend describes each IR op by one function in a table, ``op -> fn(ctx, site, ins)``,
where ``ins`` are the op's inputs as framework values, already in the perms the
:class:`~convbench_lowering.layout.LayoutPlan` asks for, and ``site`` tells the function
the node, those perms and the perm its output must have. :func:`compile_program` checks
once that every op of the graph has a function (an op without one makes the case a
``skipped`` row naming it) and fixes the order of work; :meth:`Program.run` then runs the
straight-line program on the source values (under ``tf.function`` or ``jax.jit`` it is
traced once). Adding an op to a backend is adding one function to its table.

Training conventions shared by every backend: loss = sum over outputs of
sum(output * cotangent); one step is forward, loss, backward and an SGD update with
learning rate :data:`LEARNING_RATE`; ``check()`` returns the outputs and ``grad:<name>``
of every graph input and param, computed before the update.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from convbench.backend import UnsupportedCase
from convbench.graph import SOURCE_OPS, Graph, Node, Shape
from convbench_lowering.layout import Converter, LayoutPlan, Perm

LEARNING_RATE = 0.01


@dataclass(frozen=True)
class Site:
    """Where an op function is applied: the node, its inputs' perms and its output's perm."""

    node: Node
    in_shapes: tuple[Shape, ...]
    in_perms: tuple[Perm | None, ...]
    out_perm: Perm | None

    @property
    def attrs(self) -> Mapping[str, Any]:
        return self.node.attrs


OpFn = Callable[[Any, Site, list[Any]], Any]


@dataclass(frozen=True)
class _Read:
    name: str
    shape: Shape
    have: Perm | None
    want: Perm | None
    rank: int


@dataclass(frozen=True)
class _Step:
    fn: OpFn
    site: Site
    reads: tuple[_Read, ...]


class Program:
    """A graph compiled against one backend's op table and layout plan."""

    def __init__(self, graph: Graph, steps: list[_Step], converter: Converter) -> None:
        self.graph = graph
        self.steps = steps
        self.converter = converter

    def run(self, ctx: Any, sources: Mapping[str, Any]) -> list[Any]:
        """The graph's outputs (in plan perms) from the values of its source nodes."""
        values: dict[str, Any] = dict(sources)
        convert = self.converter.convert
        for step in self.steps:
            ins = []
            for r in step.reads:
                v = values[r.name]
                if r.have != r.want or r.rank != len(r.shape):
                    v = convert(v, r.shape, r.have, r.want, r.rank)
                ins.append(v)
            values[step.site.node.name] = step.fn(ctx, step.site, ins)
        return [values[name] for name in self.graph.outputs]


def compile_program(graph: Graph, plan: LayoutPlan, table: Mapping[str, OpFn], converter: Converter, backend: str) -> Program:
    """Resolve each op to its function and each read to a conversion; UnsupportedCase if
    some op has no function in ``table``."""
    missing = sorted({n.op for n in graph.ops if n.op not in table})
    if missing:
        raise UnsupportedCase(f"{backend}: op(s) {', '.join(missing)} not lowered in this backend")
    steps = []
    for node in graph.nodes:
        if node.op in SOURCE_OPS:
            continue
        wants = plan.input_perms(graph, node)
        reads = []
        for name, want in zip(node.inputs, wants, strict=True):
            shape = graph.shape(name)
            rank = len(want) if want is not None else len(shape)
            reads.append(_Read(name, shape, plan.perms[name], want, rank))
        site = Site(
            node,
            tuple(graph.shape(i) for i in node.inputs),
            tuple(wants),
            plan.perms[node.name],
        )
        steps.append(_Step(table[node.op], site, tuple(reads)))
    return Program(graph, steps, converter)
