"""Which ``torch.fx`` node of a lowered module computes which graph node.

:func:`convbench_torch.lower.lower` emits exactly one ``call_function`` node per op node
of the graph, in graph order (batch norm's statistics copies are ``call_method`` nodes),
named after the op node. :func:`op_nodes` pairs them up, checking the names, so the
``kernel`` variant can swap a node's function and the profiler can wrap each node in a
named range without touching the lowering.
"""

from __future__ import annotations

import re

from torch import fx

from convbench.graph import Graph, Node


def _ident(name: str) -> str:
    return re.sub(r"\W", "_", name)


def op_nodes(module: fx.GraphModule, graph: Graph) -> list[tuple[Node, fx.Node]]:
    """(graph op node, its fx call_function node) for every op node of ``graph``."""
    calls = [n for n in module.graph.nodes if n.op == "call_function"]
    ops = graph.ops
    if len(calls) != len(ops):
        raise RuntimeError(f"lowered module has {len(calls)} function calls for {len(ops)} graph ops")
    pairs = list(zip(ops, calls, strict=True))
    for node, call in pairs:
        stem = _ident(node.name).lstrip("_")
        if stem not in call.name:
            raise RuntimeError(f"lowered node {call.name!r} does not match graph node {node.name!r}")
    return pairs
