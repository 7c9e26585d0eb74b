"""Small value predicates and formats shared by the tables, renderings and environment
listings: is a value a usable number, and how a recorded fact is shown."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any


def is_number(value: Any) -> bool:
    """A finite real number (NumPy scalars included; booleans, None and NaN are not)."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


def show(value: Any) -> str:
    """A recorded fact as text: None as "unknown", booleans as yes/no, floats by ``%g``,
    lists joined by commas ("none" when empty), mappings as ``key=value`` pairs."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(show(v) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={show(v)}" for k, v in value.items()) or "none"
    return str(value)
