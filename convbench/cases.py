"""A case: one cell of a suite's matrix, and the vocabulary of its key fields."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Device = Literal["cpu", "cuda"]
Mode = Literal["inference", "training"]
DType = Literal["float32", "float16", "bfloat16"]
Layout = Literal["nchw", "nhwc"]

#: The generic executions, which every backend may run in a form of its own. A suite's
#: ``execution`` is one of these or a name a backend plugin declares
#: (:attr:`convbench.backend.Backend.executions`); :func:`convbench.backend.execution_vocabulary`
#: is the whole vocabulary. A backend runs the names in its ``executions``; other cases
#: are skipped with the reason, and ``details["execution_used"]`` records which form ran.
GENERIC_EXECUTIONS: dict[str, str] = {
    "eager": "op by op, no compilation",
    "compiled": "the backend's default compiled form",
}

#: Fields that identify a case, in the order they are printed.
KEY_FIELDS = (
    "workload",
    "variant",
    "backend",
    "device",
    "mode",
    "batch",
    "dtype",
    "layout",
    "execution",
    "threads",
)

#: Relative-error tolerance of verification against the float64 reference, per dtype.
DEFAULT_TOLERANCE: dict[str, float] = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}

ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}


def format_case_id(key: Mapping[str, Any]) -> str:
    """The case id of the key fields in ``key``: their ``str()`` in :data:`KEY_FIELDS`
    order, joined by ``|`` (a missing field, and threads unset, read ``None``)."""
    return "|".join(str(key.get(f)) for f in KEY_FIELDS)


def parse_case_id(case_id: str) -> dict[str, str]:
    """The key fields of a case id, as the text :func:`format_case_id` wrote (a ``|``
    inside the workload, the first field, is kept); ValueError when fields are missing."""
    parts = str(case_id).rsplit("|", len(KEY_FIELDS) - 1)
    if len(parts) != len(KEY_FIELDS):
        raise ValueError(f"case id {case_id!r}: expected {len(KEY_FIELDS)} fields separated by '|'")
    return dict(zip(KEY_FIELDS, parts, strict=True))


class Case(BaseModel):
    """What to compute (workload, variant) and where and how (backend ... threads)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suite: str
    workload: str
    kind: str
    params: dict[str, Any]
    variant: str = "native"
    backend: str = "torch"
    device: Device = "cpu"
    mode: Mode = "inference"
    batch: int = 1
    dtype: DType = "float32"
    layout: Layout = "nchw"
    execution: str = "eager"  #: a name of the vocabulary (checked when a suite loads)
    threads: int | None = None

    @property
    def case_id(self) -> str:
        """Stable, readable identity of the case (unique within a suite)."""
        return format_case_id(self.key())

    @property
    def group_key(self) -> str:
        """Identity without the variant: cases that differ only in variant compare side by side."""
        return "|".join(str(getattr(self, f)) for f in KEY_FIELDS if f != "variant")

    @property
    def data_seed(self) -> int:
        """Seed of inputs and weights: depends on the workload and batch only, so every
        variant and backend computes on the same data."""
        blob = json.dumps([self.kind, self.params, self.batch], sort_keys=True).encode()
        return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little")

    @property
    def worker_key(self) -> tuple[str, str]:
        """Cases sharing a worker process: same backend and device."""
        return (self.backend, self.device)

    def key(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in KEY_FIELDS}
