"""The ``kernel`` variant in torch: run the Triton kernels for the nodes they support.

The variant's graph rewrite is the identity (:mod:`convbench.variants`); the backend
lowers the graph as usual and then :func:`install` swaps the function of every
depthwise ``conv2d`` node the kernels support for :func:`~convbench_torch.kernels.
depthwise.conv2d`, of every ``shift`` node for :func:`~convbench_torch.kernels.shift.
shift`, and replaces every address shift (the IR's reshape, slices, pads, concat and
reshape: :func:`convbench.workloads.shift.match_address_shift`) by one call of
:func:`~convbench_torch.kernels.shift.address_shift_with_tables` (bound ``plane``, the
workload's definition) on the pattern's input; the pattern's other nodes are elided
(their calls become :func:`_elided`, a no-op, so every graph op keeps its fx node). Nodes the kernels do not support keep torch's function and are listed, with the
reason, in the case's details. On a CPU (the interpreter) a step may launch at most
:data:`~convbench_torch.kernels.INTERPRETER_PROGRAM_LIMIT` program instances.
"""

from __future__ import annotations

from typing import Any

from torch import fx

from convbench.backend import UnsupportedCase
from convbench.graph import Graph
from convbench.variants import is_depthwise
from convbench.workloads.shift import AddressShiftMatch, match_address_shift
from convbench_torch.fxnodes import _ident, op_nodes
from convbench_torch.kernels import INTERPRETER_PROGRAM_LIMIT, depthwise
from convbench_torch.kernels import shift as shift_kernels


def install(
    module: fx.GraphModule, graph: Graph, *, training: bool, channels_last: bool, device: Any = None
) -> dict[str, Any]:
    """Swap in the kernels; returns the details to record. UnsupportedCase if none applies.

    ``device``: where the shift nodes' offset tables live (default: the module's first
    parameter or buffer, else the CPU)."""
    import torch
    import triton

    if device is None:
        device = next((t.device for t in (*module.parameters(), *module.buffers())), torch.device("cpu"))

    interpreted = depthwise.interpreted()
    kernel_nodes: list[str] = []
    native: dict[str, str] = {}
    programs = 0
    pairs = op_nodes(module, graph)
    calls = {node.name: call for node, call in pairs}
    for node, call in pairs:
        if node.op == "reshape" and (match := match_address_shift(node, graph)) is not None:
            programs += _install_address_shift(module, graph, match, calls, device, training)
            kernel_nodes.append(node.name)
        elif is_depthwise(node, graph):
            a = node.attrs
            x_shape, w_shape = graph.shape(node.inputs[0]), graph.shape(node.inputs[1])
            reason = depthwise.supports(x_shape, w_shape, a["stride"], a["padding"], a["dilation"], a["groups"])
            if reason is not None:
                native[node.name] = reason
                continue
            call.target = depthwise.conv2d
            programs += depthwise.program_count(
                x_shape, w_shape, int(a["stride"][0]), int(a["padding"][0]),
                training=training, channels_last=channels_last, interpret=interpreted,
            )  # fmt: skip
            kernel_nodes.append(node.name)
        elif node.op == "shift":
            tables = shift_kernels.shift_tables(node.attrs["offsets"], graph.shape(node.inputs[0])[1], device)
            names = []
            for part, table in zip(("dy", "dx", "ndy", "ndx"), tables, strict=True):
                attr = f"_kernel_shift_{_ident(node.name)}_{part}"
                module.register_buffer(attr, table, persistent=False)
                names.append(attr)
            with module.graph.inserting_before(call):
                getters = [module.graph.get_attr(attr) for attr in names]
            call.target = shift_kernels.shift_with_tables
            call.args = (call.args[0], *getters)
            call.kwargs = {}
            block = 8192 if interpreted else 1024  # as kernels.shift chooses
            programs += (2 if training else 1) * -(-graph[node.name].size // block)
            kernel_nodes.append(node.name)
    if not kernel_nodes:
        why = "; ".join(f"{k}: {v}" for k, v in native.items()) or "no depthwise conv2d, shift or address shift"
        raise UnsupportedCase(f"kernel variant: nothing the Triton kernels support ({why})")
    if interpreted and programs > INTERPRETER_PROGRAM_LIMIT:
        raise UnsupportedCase(
            f"kernel variant on cpu: one step launches {programs} Triton program instances, more "
            f"than the interpreter limit of {INTERPRETER_PROGRAM_LIMIT} (~35 ms each); use a tiny "
            "shape, or a GPU"
        )
    module.recompile()
    return {
        "kernel": "triton (convbench_torch.kernels): depthwise conv fwd/dgrad/wgrad, shift, address shift",
        "kernel_tables": "shift and address-shift offset tables built once at install (module buffers)",
        "kernel_nodes": kernel_nodes,
        "kernel_native_nodes": native,
        "triton": str(triton.__version__),
        "triton_interpret": interpreted,
        "kernel_programs_per_step": programs,
    }


def _elided() -> None:
    """What an elided node of a replaced pattern computes: nothing."""
    return None


def _install_address_shift(
    module: fx.GraphModule, graph: Graph, match: AddressShiftMatch, calls: dict[str, fx.Node], device: Any, training: bool
) -> int:
    """Replace the pattern ending at ``match.nodes[-1]`` by the address-shift kernel;
    returns the Triton programs one step launches for it."""
    final = calls[match.nodes[-1]]
    source = calls[match.nodes[0]].args[0]  # the first reshape's input: x, (N, C, H, W)
    a, offs = shift_kernels.address_tables(list(match.offsets), graph.shape(match.source)[1], device)
    names = []
    for part, table in (("a", a), ("offs", offs)):
        attr = f"_kernel_address_{_ident(match.nodes[-1])}_{part}"
        module.register_buffer(attr, table, persistent=False)
        names.append(attr)
    with module.graph.inserting_before(final):
        getters = [module.graph.get_attr(attr) for attr in names]
    final.target = shift_kernels.address_shift_with_tables
    final.args = (source, *getters, "plane")
    final.kwargs = {}
    for name in reversed(match.nodes[:-1]):  # consumers first: elide what nothing reads now
        call = calls[name]
        if not call.users:
            call.target, call.args, call.kwargs = _elided, (), {}
    block = 8192 if depthwise.interpreted() else 1024  # as kernels.shift chooses
    return (2 if training else 1) * -(-graph[match.source].size // block)
