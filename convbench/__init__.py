"""convbench: benchmark the convolutions that compact CNNs are made of."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(paths):  # noqa: ANN001 - re-exported with its full signature below
    """Load run folders into one pandas DataFrame (see :func:`convbench.results.load`)."""
    from convbench.results import load as _load

    return _load(paths)
