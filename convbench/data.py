"""Seeded float64 data for a graph: inputs, weights, constants and output cotangents.

Every backend receives the same arrays for the same workload, so all of them compute
the same function on the same data. Each tensor's generator is seeded from the case's
data seed and the tensor's *name*, so a variant that keeps a parameter's name (and shape)
sees the very same weight values as ``native``; a parameter a variant expands
(``diagonalwise(param=expanded)``: attribute ``expands``) is drawn as the compact weight
it stands for, then multiplied by its mask, so it too holds ``native``'s values.
"""

from __future__ import annotations

import zlib

import numpy as np

from convbench.graph import Graph, Node

Tensors = dict[str, np.ndarray]


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _draw(node: Node, seed: int) -> np.ndarray:
    rng = _rng(seed, node.name)
    shape = node.shape
    if node.op == "input":
        return rng.standard_normal(shape)
    init = node.attrs.get("init")
    if node.op == "const" and init is None:
        return np.array(node.attrs["value"], dtype=np.float64)
    fan_in = max(int(node.attrs.get("fan_in", 1)), 1)
    if init == "he_normal":
        return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    if init == "fan_in_uniform":
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape)
    if init in ("bn_gamma", "running_var"):
        return rng.uniform(0.5, 1.5, shape)
    if init in ("bn_beta", "running_mean"):
        return rng.standard_normal(shape) * 0.1
    if init == "zeros":
        return np.zeros(shape)
    if init == "prelu_slope":  # around PyTorch's constant 0.25, one slope per channel
        return rng.uniform(0.0, 0.5, shape)
    raise ValueError(f"node {node.name!r}: unknown initialiser {init!r}")


def _expanded(node: Node, seed: int, drawn: Tensors) -> np.ndarray:
    """An expanded parameter (``diagonalwise(param=expanded)``, attribute ``expands``):
    the compact weight it stands for, drawn as that weight is (its name, shape ``compact_shape``,
    the same initialiser), times the const ``mask`` (broadcast): the same values as the
    compact form's masked weight."""
    compact = Node(node.attrs["expands"], "param", attrs=node.attrs, shape=tuple(node.attrs["compact_shape"]))
    value = _draw(compact, seed) * drawn[node.attrs["mask"]]
    if value.shape != tuple(node.shape):
        raise ValueError(f"node {node.name!r}: compact {compact.shape} times mask is {value.shape}, not {node.shape}")
    return value


def make_tensors(graph: Graph, seed: int) -> Tensors:
    """Float64 arrays for every source node (input, param, const) of ``graph``.

    An expanded parameter (attribute ``expands``) is drawn from the compact weight it
    stands for (:func:`_expanded`), so it holds the very values ``native`` gets."""
    sources = [n for n in graph.nodes if n.op in ("input", "param", "const")]
    drawn = {n.name: _draw(n, seed) for n in sources if "expands" not in n.attrs}
    drawn.update({n.name: _expanded(n, seed, drawn) for n in sources if "expands" in n.attrs})
    return {n.name: drawn[n.name] for n in sources}


def native_tensors(graph: Graph, seed: int, drawn: Tensors) -> Tensors:
    """The source tensors of ``graph`` (the native graph of a case), taken from ``drawn``
    (a variant's tensors for the same seed: the same name has the same values) where
    there, drawn otherwise (a compact weight the variant replaced by an expanded one)."""
    missing = [n for n in graph.nodes if n.op in ("input", "param", "const") and n.name not in drawn]
    extra = make_tensors(Graph(tuple(missing), ()), seed) if missing else {}
    return {n.name: drawn[n.name] if n.name in drawn else extra[n.name] for n in graph.nodes if n.op in ("input", "param", "const")}


def make_cotangents(graph: Graph, seed: int) -> Tensors:
    """Upstream gradients for the outputs: the loss is sum(output * cotangent).

    Scaled by 1/sqrt(size) so gradient magnitudes do not grow with the batch.
    """
    out = {}
    for name in graph.outputs:
        node = graph[name]
        out[name] = _rng(seed, "cotangent:" + name).standard_normal(node.shape) / np.sqrt(node.size)
    return out
