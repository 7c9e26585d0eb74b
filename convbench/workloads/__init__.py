"""Workloads: what is computed, each a graph builder with validated parameters.

A workload kind pairs a pydantic model of its parameters with a function that builds
the graph for a batch size. Suites name kinds by their registry key. A kind may name
configurations (ShuffleNetV1 g=1 ... g=8, the MENet variants ...), each with the figures
its authors (or torchvision, Keras, a model zoo) publish, which the tests reproduce.

Counting conventions (README, "Counting"): parameters are the trainable ones (conv and FC weights
and biases, BN scale and shift; not BN running statistics); multiply-adds are those of
conv2d and linear nodes, at batch 1 (see :mod:`convbench.graph`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel

from convbench.graph import Graph, node_macs

Counted = Literal["conv+fc", "conv"]
Rounding = Literal["nearest", "down", "up"]
#: What K, M and G mean in a source: powers of 10, or of 2 (thop's ``clever_format`` and
#: the repositories that print with it divide by 1024**2 for "M").
Units = Literal["decimal", "binary"]

_UNITS = {"decimal": {"K": 1e3, "M": 1e6, "G": 1e9}, "binary": {"K": 2.0**10, "M": 2.0**20, "G": 2.0**30}}


def printed(text: str, units: Units = "decimal") -> tuple[float, float]:
    """A figure as printed, ``"569 M"``, ``"0.145 G"``, ``"4.2 M"``: (value, unit of its
    last digit), both absolute, K/M/G read in ``units``."""
    number, _, unit = text.strip().partition(" ")
    if unit not in _UNITS[units]:
        raise ValueError(f"figure {text!r}: expected NUMBER K|M|G")
    exponent = min(int(Decimal(number).as_tuple().exponent), 0)
    return float(number) * _UNITS[units][unit], 10.0**exponent * _UNITS[units][unit]


@dataclass(frozen=True)
class Published:
    """Figures a source publishes for one configuration, as printed there.

    ``params``: an exact count (int) or a rounded figure as printed (``"4.2 M"``), which
    ours matches when it rounds to it. ``macs``: multiply-adds as printed (``"569 M"``,
    ``"0.145 G"``); ``macs_counted`` says whether the source counts the FC layer
    (``conv+fc``, our convention) or the convolutions only (``conv``), and
    ``macs_rounding`` how it rounded: to the nearest printed digit, down (truncation) or
    up. ``units``: whether the source's K, M and G are powers of 10 or of 2. The tests
    check every figure under these stated conventions.
    """

    source: str
    params: int | str | None = None
    macs: str | None = None
    macs_counted: Counted = "conv+fc"
    macs_rounding: Rounding = "nearest"
    units: Units = "decimal"
    note: str = ""

    def mismatches(self, graph: Graph) -> list[str]:
        """What of ``graph`` (built at batch 1) disagrees with these figures; empty if all agree."""
        out = []
        params = graph.param_count()
        if isinstance(self.params, int) and params != self.params:
            out.append(f"parameters {params:,} != published {self.params:,}")
        elif isinstance(self.params, str) and not _agrees(params, self.params, "nearest", self.units):
            out.append(f"parameters {params:,} do not round to published {self.params}")
        if self.macs is not None:
            macs = graph.macs()
            if self.macs_counted == "conv":
                macs -= sum(node_macs(graph, n) for n in graph.of_op("linear"))
            if not _agrees(macs, self.macs, self.macs_rounding, self.units):
                out.append(f"MACs ({self.macs_counted}) {macs / 1e6:.2f} M do not round {self.macs_rounding} to published {self.macs}")
        return out


def _agrees(value: float, figure: str, rounding: Rounding, units: Units = "decimal") -> bool:
    shown, unit = printed(figure, units)
    eps = 1e-9 * unit
    if rounding == "down":
        return shown - eps <= value < shown + unit + eps
    if rounding == "up":
        return shown - unit - eps < value <= shown + eps
    return abs(value - shown) <= unit / 2 + eps


@dataclass(frozen=True)
class NamedConfig:
    """A named configuration of a workload kind and what is published about it."""

    name: str
    params: Mapping[str, Any]
    published: Published | None = None


@dataclass(frozen=True)
class WorkloadKind:
    """A family of workloads: its name, parameter model and graph builder."""

    name: str
    params_model: type[BaseModel]
    builder: Callable[[Any, int], Graph]
    description: str
    family: str = "layer"  #: "layer" or "network"
    configs: tuple[NamedConfig, ...] = field(default=())
    published: Published | None = None  #: figures of the default parameters, if any

    def build(self, params: BaseModel | Mapping[str, Any], batch: int) -> Graph:
        if not isinstance(params, BaseModel):
            params = self.params_model.model_validate(dict(params))
        return self.builder(params, batch)

    def config(self, name: str) -> NamedConfig:
        for c in self.configs:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no configuration {name!r}; known: {', '.join(c.name for c in self.configs)}")


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


def catalogue() -> list[dict[str, Any]]:
    """One row per layer kind, then per network kind: its named configurations (the one
    equal to the defaults is marked ``(default)``), or its defaults when none is. A row has
    kind, family, config, params (dict), description and, where the kind can be built
    from them, input shape, parameters, MACs (batch 1), the published figures and the
    list of mismatches with them."""
    rows: list[dict[str, Any]] = []
    kinds = sorted(WORKLOADS.values(), key=lambda k: k.family != "layer")
    for kind in kinds:
        default = kind.params_model.model_validate({}) if kind.family == "network" else None
        entries = []
        for c in kind.configs:
            is_default = default is not None and kind.params_model.model_validate(dict(c.params)) == default
            entries.append((c.name + (" (default)" if is_default else ""), c.params, c.published))
        if default is not None and not any(e[0].endswith("(default)") for e in entries):
            entries.insert(0, ("default", {}, kind.published))
        if not entries:
            rows.append({"kind": kind.name, "family": kind.family, "config": "", "params": {}, "description": kind.description})
        for name, params, pub in entries:
            g = kind.build(params, 1)
            rows.append({
                "kind": kind.name, "family": kind.family, "config": name, "params": dict(params),
                "description": kind.description, "input": g.inputs[0].shape,
                "parameters": g.param_count(), "macs": g.macs(), "published": pub,
                "mismatches": pub.mismatches(g) if pub else [],
            })  # fmt: skip
    return rows


from convbench.workloads import (  # noqa: E402,F401  (registration)
    channel_pool,
    dicenet,
    eca,
    fd_mobilenet,
    group,
    layers,
    menet,
    mixconv,
    mixnet,
    mobilenet,
    mobilenet_v2,
    pcdarts,
    scc,
    scc_mobilenet,
    shift,
    shiftnet,
    shuffle,
    shufflenet,
    thundernet,
)
