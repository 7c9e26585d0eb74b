"""Verification of a backend's results against the float64 reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Verification:
    """Worst norm-wise relative error over every checked tensor, and where it was."""

    error: float
    worst: str | None
    tolerance: float
    missing: list[str]

    @property
    def ok(self) -> bool:
        return not self.missing and bool(np.isfinite(self.error)) and self.error <= self.tolerance


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """||got - want|| / ||want|| (Frobenius); absolute error when ``want`` is all zeros."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    diff = np.linalg.norm((got - want).ravel())
    scale = np.linalg.norm(want.ravel())
    return float(diff / scale) if scale > 0 else float(diff)


def verify(got: dict[str, np.ndarray], want: dict[str, np.ndarray], tolerance: float) -> Verification:
    """Compare every tensor of the reference ``want`` with the backend's ``got``."""
    missing = sorted(set(want) - set(got))
    worst, error = None, 0.0
    for key in sorted(set(want) & set(got)):
        e = relative_error(got[key], want[key])
        if not e <= error:  # also catches NaN
            worst, error = key, e
    return Verification(error, worst, tolerance, missing)
