"""Verification of training at the kinks of relu, relu6 and prelu.

A float32 backend computes every pre-activation with a rounding error. An element whose
float64 value lies closer to a kink (0, or 6 for relu6) than that error may fall on the
other side in the backend, where the derivative is another (1 against 0): its gradient is
not determined by float32 arithmetic. Most gradients do not notice one such element, but
one that sums to almost nothing does: ECA-MobileNetV2's channel-attention conv weight (a
sum over every channel and pixel, largely cancelled by the batch norm after it). At 0.25x,
64 px, batch 2, torch and JAX in float32 miss one such gradient by 0.129; with one relu6
input flipped (8.2e-6 from its kink, relative to its tensor's largest value), they are
within 0.0020 of the reference.

So a float32 training case that misses its tolerance is checked once more. Its *ties*
are the elements within :data:`TIE_RTOL` of a kink (relative to the largest absolute
value of that op's input); they are tried one at a time, nearest first (at most
:data:`TIE_LIMIT` of them, for at most :data:`TIE_BUDGET_S` seconds: one backward pass
each), each with its derivative taken from the other side of the kink, to see how much
closer it alone brings the reference's gradients to the backend's. The helpful ones are
then kept the most helpful first, each only if it still helps, until the reference is
within the tolerance (the single-flip effects summed) or they run out. The backend passes if
it is within the tolerance of the reference with exactly the kept flips (a full backward
pass, not a sum of single-flip effects). Only the flipped elements differ from the
reference, so a wrong gradient anywhere else still fails; the row records which elements
were flipped and the error before the flips.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from convbench.graph import Graph
from convbench.reference import KINKS, backward, forward
from convbench.verify import Verification, fair_share_floors, relative_error, verify

Tensors = dict[str, np.ndarray]
#: Per dtype: how near a kink (relative to the largest |value| of the op's input) an element
#: is a tie. float32 only: ~1000x its unit roundoff, the rounding a pre-activation gathers
#: through a few dozen layers and a batch norm over few values (DSXplore's MobileNet at
#: 0.25x, 32 px, batch 2: the element torch and MXNet put on the other side lies 1.8e-5
#: from the kink, in the last block). Half precision is checked at its own tolerances.
TIE_RTOL: dict[str, float] = {"float32": 1e-4}
#: At most this many ties (the nearest to their kinks) are tried, one backward pass each...
TIE_LIMIT = 256
#: ...for at most this many seconds (a tiny network's backward takes ~15 ms), and as long
#: again to combine the helpful ones.
TIE_BUDGET_S = 30.0


@dataclass(frozen=True)
class Tie:
    """One element of a kinked op's input near the kink."""

    node: str
    index: tuple[int, ...]  #: the element, in the op's input (NCHW)
    flat: int
    distance: float  #: |value - kink| / max |value| of the input

    def describe(self) -> dict[str, object]:
        return {"node": self.node, "index": list(self.index), "distance": float(f"{self.distance:.3g}")}


@dataclass
class TieCheck:
    """The check against the reference with some ties flipped."""

    verification: Verification
    flips: list[Tie]
    ties: int  #: elements within the tie distance, over the whole graph
    tried: int  #: of them, flipped one at a time (the nearest first)


def find_ties(graph: Graph, values: Mapping[str, np.ndarray], rtol: float) -> list[Tie]:
    """Every element of a kinked op's input within ``rtol`` of a kink, nearest first."""
    ties = []
    for node in graph.nodes:
        kinks = KINKS.get(node.op)
        if kinks is None:
            continue
        x = values[node.inputs[0]]
        scale = float(np.abs(x).max()) if x.size else 0.0
        if scale == 0.0:
            continue
        distance = np.min([np.abs(x - k) for k in kinks], axis=0) / scale
        for flat in np.flatnonzero(distance < rtol):
            index = tuple(int(i) for i in np.unravel_index(flat, x.shape))
            ties.append(Tie(node.name, index, int(flat), float(distance.ravel()[flat])))
    return sorted(ties, key=lambda t: t.distance)


def _flipped(ties: list[Tie]) -> dict[str, np.ndarray]:
    by_node: dict[str, list[int]] = {}
    for tie in ties:
        by_node.setdefault(tie.node, []).append(tie.flat)
    return {node: np.asarray(flat, dtype=np.intp) for node, flat in by_node.items()}


def verify_at_ties(
    graph: Graph,
    tensors: Mapping[str, np.ndarray],
    cotangents: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    want: Mapping[str, np.ndarray],
    tolerance: float,
    dtype: str,
) -> TieCheck | None:
    """The check of a training case's ``got`` against ``want`` (the float64 reference of the
    native ``graph`` on ``tensors``) with the ties flipped that bring it closer; None when
    the dtype has no tie rule or no flip helps."""
    rtol = TIE_RTOL.get(dtype)
    if rtol is None:
        return None
    values = forward(graph, tensors, training=True)
    ties = find_ties(graph, values, rtol)
    if not ties:
        return None
    floors = fair_share_floors(dict(want))
    sources = [n.name for n in graph.nodes if n.op in ("input", "param")]

    def gradients(flips: list[Tie]) -> Tensors:
        grads = backward(graph, values, cotangents, training=True, flipped=_flipped(flips))
        return {f"grad:{name}": grads[name] for name in sources}

    def misfit(reference: Mapping[str, np.ndarray]) -> float:
        return sum(relative_error(got[k], reference[k], floors[k]) ** 2 for k in reference if k in got)

    base = {k: np.asarray(want[k], dtype=np.float64) for k in want if k.startswith("grad:")}

    def effect(tie: Tie) -> Tensors:
        flipped = gradients([tie])
        return {k: flipped[k] - base[k] for k in base}

    # each tie alone: how much closer it brings the reference (one backward pass each)
    base_misfit, gains, tried = misfit(base), [], 0
    deadline = time.monotonic() + TIE_BUDGET_S
    for tie in ties[:TIE_LIMIT]:
        if time.monotonic() > deadline:
            break
        tried += 1
        delta = effect(tie)
        alone = {k: base[k] + delta[k] for k in base}
        gain = base_misfit - misfit(alone)
        if gain > 0:
            gains.append((gain, tie))
            if verify(dict(got), {**want, **alone}, tolerance).ok:
                gains = [(gain, tie)]  # this one alone is enough
                break
    # then the helpful ones together, the most helpful first, while each still helps
    current, current_misfit, kept = base, base_misfit, []
    deadline = time.monotonic() + TIE_BUDGET_S
    for _, tie in sorted(gains, key=lambda g: -g[0]):
        if time.monotonic() > deadline:
            break
        delta = effect(tie)
        trial = {k: current[k] + delta[k] for k in base}
        trial_misfit = misfit(trial)
        if trial_misfit < current_misfit:
            current, current_misfit = trial, trial_misfit
            kept.append(tie)
            if verify(dict(got), {**want, **current}, tolerance).ok:
                break  # close enough: the exact reference with these flips decides
    if not kept:
        return None
    exact = {**want, **gradients(kept)}
    return TieCheck(verify(dict(got), exact, tolerance), kept, len(ties), tried)
