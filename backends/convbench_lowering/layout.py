"""Physical layouts of a graph's values, for backends that do not compute in NCHW order.

The IR is logical NCHW (weights OIHW). A backend may hold a value in another order: its
*perm* says how, ``physical = np.transpose(logical, perm)``, and ``None`` means logical
order. :func:`plan_layouts` gives every node one perm:

* rank-4 values that depend on a graph ``input`` (activations) take ``activation_perm``
  (``NHWC`` for an NHWC case, ``None`` for NCHW);
* each op declares what it needs (:data:`FIXED`): a conv reads its input in the
  activation perm and its weight in ``weight_perm`` (``HWIO`` for TensorFlow);
* *agnostic* ops (elementwise, slice, concat, pad, the channel ``gather``) run in any
  order, with their axes remapped (a ``gather`` takes its indices along the physical
  place of its logical ``axis``: the last axis of an NHWC activation), so a value
  computed only from params and consts (a diagonalwise weight, ``mul(param, mask)``)
  takes the order its consumers want (a reverse pass asks them), and its sources are
  stored in that order: no transpose per step;
* any other op (``reshape``, ``transpose``, or one added to the IR but not yet made
  layout-aware here) reads logical inputs and writes a logical output: correct, with
  transposes around it in an NHWC case.

Conversions between perms (and rank alignment for broadcasting in ``add``/``mul``) are
:meth:`Converter.convert`, given the framework's ``transpose`` and ``reshape``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from convbench.graph import Graph, Node

Perm = tuple[int, ...]
NHWC: Perm = (0, 2, 3, 1)
#: A conv weight (O, I, kh, kw) stored as (kh, kw, I, O): TensorFlow's filter layout.
HWIO: Perm = (2, 3, 1, 0)

#: Ops that compute the same in any memory order (axis attributes remapped).
AGNOSTIC = frozenset({"relu", "relu6", "sigmoid", "add", "mul", "slice", "concat", "pad", "gather"})
#: Markers of :data:`FIXED` requirements.
ACT, WEIGHT, LOGICAL = "act", "weight", None
#: Per op: (perm wanted of each input, perm of the output); the last input entry repeats.
FIXED: dict[str, tuple[tuple[str | None, ...], str | None]] = {
    "conv2d": ((ACT, WEIGHT, LOGICAL), ACT),
    "batchnorm": ((ACT, LOGICAL), ACT),
    "prelu": ((ACT, LOGICAL), ACT),
    "avgpool": ((ACT,), ACT),
    "maxpool": ((ACT,), ACT),
    "global_avgpool": ((ACT,), ACT),
    "shift": ((ACT,), ACT),
    "upsample": ((ACT,), ACT),
    "flatten": ((ACT,), LOGICAL),
    "linear": ((LOGICAL,), LOGICAL),
}


def inverse(perm: Perm) -> Perm:
    """The permutation that undoes ``perm``."""
    return tuple(int(i) for i in np.argsort(perm))


def physical_axis(axis: int, rank: int, perm: Perm | None) -> int:
    """Where logical ``axis`` (negative allowed) lies in a value held in ``perm`` order."""
    axis %= rank
    return axis if perm is None else perm.index(axis)


def physical_pads(pads: Any, perm: Perm | None) -> list[tuple[int, int]]:
    """The IR's per-axis (before, after) pads of a ``pad`` node, in ``perm`` order."""
    pairs = [(int(a), int(b)) for a, b in pads]
    return pairs if perm is None else [pairs[axis] for axis in perm]


def to_physical(array: np.ndarray, perm: Perm | None) -> np.ndarray:
    """A logical NumPy array in ``perm`` order (a contiguous copy)."""
    return np.ascontiguousarray(array if perm is None else np.transpose(array, perm))


def to_logical(array: np.ndarray, perm: Perm | None) -> np.ndarray:
    """A NumPy array held in ``perm`` order back in logical order (a contiguous copy)."""
    return np.ascontiguousarray(array if perm is None else np.transpose(array, inverse(perm)))


@dataclass
class LayoutPlan:
    """The perm of every node's value, and of every input each op reads."""

    perms: dict[str, Perm | None]
    activation_perm: Perm | None
    weight_perm: Perm | None

    def input_perms(self, graph: Graph, node: Node) -> list[Perm | None]:
        """The perm in which ``node`` wants each of its inputs."""
        return [self._wanted(graph, node, i) for i in range(len(node.inputs))]

    def _wanted(self, graph: Graph, node: Node, i: int) -> Perm | None:
        rank = len(graph.shape(node.inputs[i]))
        if node.op in AGNOSTIC:
            out = self.perms[node.name]
            return out if out is not None and rank <= len(out) else None
        if node.op in FIXED:
            wants, _ = FIXED[node.op]
            marker = wants[min(i, len(wants) - 1)]
            return self._resolve(marker, rank)
        return None

    def _resolve(self, marker: str | None, rank: int) -> Perm | None:
        perm = {ACT: self.activation_perm, WEIGHT: self.weight_perm}.get(marker)  # type: ignore[arg-type]
        return perm if perm is not None and len(perm) == rank else None


def plan_layouts(graph: Graph, activation_perm: Perm | None = None, weight_perm: Perm | None = None) -> LayoutPlan:
    """Choose the perm of every node (see the module docstring)."""
    plan = LayoutPlan({}, activation_perm, weight_perm)
    derived: set[str] = set()
    for node in graph.nodes:
        if node.op == "input" or any(i in derived for i in node.inputs):
            derived.add(node.name)
    consumers: dict[str, list[tuple[Node, int]]] = {n.name: [] for n in graph.nodes}
    for node in graph.nodes:
        for i, name in enumerate(node.inputs):
            consumers[name].append((node, i))

    # Reverse pass: what order do the consumers of each weight-like value want?
    want: dict[str, Perm | None] = {}
    for node in reversed(graph.nodes):
        if node.name in derived:
            continue
        requests = set()
        for consumer, i in consumers[node.name]:
            if consumer.op in AGNOSTIC:
                if consumer.name in derived:
                    requests.add(plan._resolve(ACT, len(consumer.shape)))
                else:
                    requests.add(want.get(consumer.name))
            elif consumer.op in FIXED:
                marker = FIXED[consumer.op][0][min(i, len(FIXED[consumer.op][0]) - 1)]
                requests.add(plan._resolve(marker, len(node.shape)))
            else:
                requests.add(None)
        perm = requests.pop() if len(requests) == 1 else None
        want[node.name] = perm if perm is not None and len(perm) == len(node.shape) else None

    for node in graph.nodes:
        rank = len(node.shape)
        if node.op == "input":
            perm = plan._resolve(ACT, rank)
        elif node.op in ("param", "const"):
            perm = want[node.name]
        elif node.op in AGNOSTIC:
            perm = plan._resolve(ACT, rank) if node.name in derived else want[node.name]
        elif node.op in FIXED:
            perm = plan._resolve(FIXED[node.op][1], rank)
        else:
            perm = None
        plan.perms[node.name] = perm
    return plan


class Converter:
    """Moves framework values between perms and ranks with the framework's own ops."""

    def __init__(self, transpose: Callable[[Any, Perm], Any], reshape: Callable[[Any, tuple[int, ...]], Any]) -> None:
        self.transpose = transpose
        self.reshape = reshape

    def convert(self, value: Any, shape: tuple[int, ...], have: Perm | None, want: Perm | None, rank: int | None = None) -> Any:
        """``value`` (logical ``shape``, held in ``have`` order) in ``want`` order.

        With ``rank`` larger than ``len(shape)``, the value is first given leading unit
        axes (NumPy broadcasting) so it can meet a rank-``rank`` operand in ``want`` order.
        """
        rank = len(shape) if rank is None else rank
        if rank > len(shape):
            if have is not None:
                value = self.transpose(value, inverse(have))
            value = self.reshape(value, (1,) * (rank - len(shape)) + tuple(shape))
            return value if want is None else self.transpose(value, want)
        if have == want:
            return value
        src = have if have is not None else tuple(range(rank))
        dst = want if want is not None else tuple(range(rank))
        return self.transpose(value, tuple(src.index(a) for a in dst))
