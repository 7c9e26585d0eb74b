"""Per-op time of a torch case from ``torch.profiler``, attributed to graph nodes.

How ops are tied to graph nodes
    In eager execution the case's ``fx.GraphModule`` is copied (sharing its parameters
    and buffers) and every node's call is wrapped in a ``record_function`` range named
    ``convbench::<graph node>`` (:func:`instrument`). A forward op belongs to the
    innermost range around it. A backward op belongs to the node whose forward op
    created its autograd function: ``autograd::engine::evaluate_function: XBackward``
    carries the forward op's sequence number. Ops under ``Optimizer.*`` are the SGD
    update; the rest (the loss, its backward, gradient accumulation, zero_grad) belong
    to no node. A compiled case runs fused kernels that no longer match graph nodes: its
    ops are listed under no node.

Which time
    On a CPU: each op's *self* CPU time (its time minus that of the ops it called), so
    the rows add up to the profiled time. On a GPU: the device time of the kernels each
    op launched (``self_device_time_total``); host-side time is not counted. Every
    figure is per step (the totals of ``steps`` steps divided by ``steps``).

This module imports torch.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import torch
from torch import fx

from convbench.graph import Graph
from convbench_torch.fxnodes import op_nodes

if TYPE_CHECKING:
    from convbench_torch.prepared import TorchPrepared

RANGE_PREFIX = "convbench::"
BACKWARD_PREFIX = "autograd::engine::evaluate_function: "


def instrument(module: fx.GraphModule, graph: Graph) -> fx.GraphModule:
    """A copy of ``module`` (same parameters) whose every node runs in a named range."""
    traced = fx.GraphModule(module, copy.deepcopy(module.graph))
    g = traced.graph
    enter = torch.ops.profiler._record_function_enter_new
    leave = torch.ops.profiler._record_function_exit._RecordFunction
    for node, call in op_nodes(traced, graph):
        with g.inserting_before(call):
            handle = g.call_function(enter, (RANGE_PREFIX + node.name, None))
        with g.inserting_after(call):
            g.call_function(leave, (handle,))
    traced.recompile()
    return traced


def _self_time(event: Any, on_device: bool) -> float:
    """Self time of ``event`` in microseconds, on the device or the CPU."""
    if on_device:
        return float(getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)))
    return float(event.self_cpu_time_total)


def attribute(events: list[Any], steps: int, on_device: bool) -> list[dict[str, Any]]:
    """Rows {op, node, phase, self_time, count} per step from profiler ``events``."""
    cpu = [e for e in events if getattr(e.device_type, "name", "CPU") == "CPU"]

    def owner(event: Any) -> tuple[str | None, str]:
        e = event
        while e is not None:
            if e.name.startswith(RANGE_PREFIX):
                return e.name[len(RANGE_PREFIX) :], "forward"
            if e.name.startswith(BACKWARD_PREFIX):
                return by_sequence.get(e.sequence_nr), "backward"
            if e.name.startswith("Optimizer."):
                return None, "update"
            e = e.cpu_parent
        return None, "other"

    by_sequence: dict[int, str] = {}
    for e in cpu:
        if e.sequence_nr is not None and e.sequence_nr >= 0 and not e.name.startswith(BACKWARD_PREFIX):
            node, phase = owner(e)
            if node is not None and phase == "forward":
                by_sequence.setdefault(e.sequence_nr, node)
    totals: dict[tuple[str | None, str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for e in cpu:
        node, phase = owner(e)
        op = "(range overhead)" if e.name.startswith(RANGE_PREFIX) else e.name
        t = totals[(node, op, phase)]
        t[0] += _self_time(e, on_device)
        t[1] += 1
    return [
        {"node": node, "op": op, "phase": phase, "self_time": t / 1e6 / steps, "count": c / steps}
        for (node, op, phase), (t, c) in totals.items()
        if t > 0 or not on_device
    ]


def profile(prepared: TorchPrepared, steps: int) -> list[dict[str, Any]]:
    """Run ``steps`` steps of ``prepared`` under torch.profiler; rows as :func:`attribute`."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    on_device = prepared.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])
    eager = prepared.case.execution == "eager"
    saved = prepared._forward
    if eager:
        prepared._forward = instrument(prepared.module, prepared.graph)
    try:
        prepared.step()  # the instrumented module's first call outside the profile
        prepared.sync()
        with torch_profile(activities=activities) as prof:
            for _ in range(steps):
                prepared.step()
            prepared.sync()
    finally:
        prepared._forward = saved
    rows = attribute(list(prof.events()), steps, on_device)
    clock = "device time of the kernels each op launched" if on_device else "self CPU time"
    source = f"torch.profiler {torch.__version__}: {clock}" + ("" if eager else "; compiled: ops not tied to graph nodes")
    for row in rows:
        row["source"] = source
    return rows
