"""Workloads: what is computed, each a graph builder with validated parameters.

A workload kind pairs a pydantic model of its parameters with a function that builds
the graph for a batch size. Suites name kinds by their registry key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from convbench.graph import Graph


@dataclass(frozen=True)
class WorkloadKind:
    """A family of workloads: its name, parameter model and graph builder."""

    name: str
    params_model: type[BaseModel]
    builder: Callable[[Any, int], Graph]
    description: str
    family: str = "layer"  #: "layer" or "network"

    def build(self, params: BaseModel | dict[str, Any], batch: int) -> Graph:
        if not isinstance(params, BaseModel):
            params = self.params_model.model_validate(params)
        return self.builder(params, batch)


WORKLOADS: dict[str, WorkloadKind] = {}


def register(kind: WorkloadKind) -> WorkloadKind:
    if kind.name in WORKLOADS:
        raise ValueError(f"workload kind {kind.name!r} registered twice")
    WORKLOADS[kind.name] = kind
    return kind


def build_graph(kind: str, params: dict[str, Any], batch: int) -> Graph:
    """The graph of workload ``kind`` with ``params`` at ``batch``."""
    if kind not in WORKLOADS:
        raise KeyError(f"unknown workload kind {kind!r}; known: {', '.join(sorted(WORKLOADS))}")
    return WORKLOADS[kind].build(params, batch)


from convbench.workloads import layers, mobilenet  # noqa: E402,F401  (registration)
