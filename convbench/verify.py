"""Verification of a backend's results against the float64 reference.

Each tensor is judged by its norm-wise relative error ||got - want|| / scale. The scale is
||want||, floored at a tenth of the tensor's *fair share* of its group's norm: with the
group (the outputs, or all gradients) holding N elements of total norm G, a tensor of n
elements has the fair share G * sqrt(n / N). The floor matters only for tensors far
smaller than the rest of their group, above all gradients that cancel almost exactly
(a batch-norm scale followed by another batch norm sums N*H*W terms whose sum is a tiny
fraction of their magnitudes): float32 arithmetic cannot resolve them relative to
themselves, and an error there is negligible for the step as a whole. Any error that is
large on the scale of the whole output or gradient still fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: A tensor's scale is at least this fraction of its fair share of its group's norm.
FAIR_SHARE_FLOOR = 0.1


@dataclass
class Verification:
    """Worst relative error over every checked tensor, and where it was."""

    error: float
    worst: str | None
    tolerance: float
    missing: list[str]

    @property
    def ok(self) -> bool:
        return not self.missing and bool(np.isfinite(self.error)) and self.error <= self.tolerance


def _norm(a: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64).ravel()))


def relative_error(got: np.ndarray, want: np.ndarray, floor: float = 0.0) -> float:
    """||got - want|| / max(||want||, floor); absolute error when both are zero."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    diff = _norm(got - want)
    scale = max(_norm(want), floor)
    return diff / scale if scale > 0 else diff


def _group(key: str) -> str:
    return "grad" if key.startswith("grad:") else "output"


def fair_share_floors(want: dict[str, np.ndarray]) -> dict[str, float]:
    """Per tensor: FAIR_SHARE_FLOOR x its fair share of its group's norm (see module doc)."""
    norms: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for key, value in want.items():
        g = _group(key)
        norms[g] = math.hypot(norms.get(g, 0.0), _norm(value))
        sizes[g] = sizes.get(g, 0) + int(np.size(value))
    return {
        key: FAIR_SHARE_FLOOR * norms[_group(key)] * math.sqrt(np.size(v) / max(sizes[_group(key)], 1))
        for key, v in want.items()
    }


def verify(got: dict[str, np.ndarray], want: dict[str, np.ndarray], tolerance: float) -> Verification:
    """Compare every tensor of the reference ``want`` with the backend's ``got``."""
    missing = sorted(set(want) - set(got))
    floors = fair_share_floors(want)
    worst, error = None, 0.0
    for key in sorted(set(want) & set(got)):
        e = relative_error(got[key], want[key], floors[key])
        if not e <= error:  # also catches NaN
            worst, error = key, e
    return Verification(error, worst, tolerance, missing)
