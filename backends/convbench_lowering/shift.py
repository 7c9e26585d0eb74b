"""The IR's ``shift`` as every backend lowers it (framework-free).

``out[c, h, w] = x[c, h - dy_c, w - dx_c]``, zeros where that falls off the plane. Every
backend computes it the same way: zero-pad the plane once by ``p``, the largest |offset|,
then take each run of channels sharing an offset (:func:`convbench.graph.shift_runs`) from
its window of the padded plane, and concatenate the runs along the channels. This module
says where the windows are; the backends only pad, slice and concatenate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from convbench.graph import shift_runs


@dataclass(frozen=True)
class Window:
    """One run of channels ``[start, stop)`` and its window of the padded plane, whose
    top-left corner is (``row``, ``col``) = (p - dy, p - dx)."""

    start: int
    stop: int
    row: int
    col: int

    def begin(self) -> tuple[int, int, int]:
        """(channel, row, col) where the window starts: logical axes 1, 2, 3."""
        return self.start, self.row, self.col

    def end(self, height: int, width: int) -> tuple[int, int, int]:
        """(channel, row, col) one past the window's end, for an unpadded ``height`` x ``width`` plane."""
        return self.stop, self.row + height, self.col + width

    def index(self, height: int, width: int, nhwc: bool) -> tuple[slice, ...]:
        """The window as a NumPy-style index of a padded 4-D value held NCHW or NHWC."""
        c = slice(self.start, self.stop)
        rows, cols = slice(self.row, self.row + height), slice(self.col, self.col + width)
        return (slice(None), rows, cols, c) if nhwc else (slice(None), c, rows, cols)


def shift_windows(offsets: Sequence[Sequence[int]]) -> tuple[int, list[Window]]:
    """``(p, windows)`` of a ``shift`` node's offsets: pad height and width by ``p`` on
    both sides, then window ``k`` of the padded value is output channels ``[start, stop)``."""
    runs = shift_runs(offsets)
    p = max(max(abs(dy), abs(dx)) for _, _, dy, dx in runs)
    return p, [Window(a, b, p - dy, p - dx) for a, b, dy, dx in runs]
