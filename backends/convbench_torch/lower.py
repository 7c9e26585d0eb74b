"""Lowering of a convbench :class:`~convbench.graph.Graph` to a ``torch.fx.GraphModule``.

The module holds every ``param`` node as an ``nn.Parameter`` and every ``const`` node as
a buffer (under sanitised attribute names, see :attr:`Lowered.attr_names`), takes the
graph's ``input`` nodes as positional arguments in graph order and returns the graph's
outputs as a tuple. Its generated ``forward`` is straight-line code, one
``torch.nn.functional`` call per node in graph order, so eager execution pays no
interpretation overhead and ``torch.compile`` sees a plain function.

This module imports torch; :mod:`convbench_torch.backend` imports it lazily.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from convbench_lowering.shift import shift_windows
from torch import fx, nn

from convbench.backend import UnsupportedCase
from convbench.graph import SOURCE_OPS, Graph, Node

#: Every op the lowering understands (sources included).
SUPPORTED_OPS = SOURCE_OPS | frozenset(
    {
        "conv2d",
        "batchnorm",
        "relu",
        "relu6",
        "sigmoid",
        "add",
        "mul",
        "concat",
        "slice",
        "avgpool",
        "maxpool",
        "global_avgpool",
        "flatten",
        "linear",
        "reshape",
        "transpose",
        "pad",
        "shift",
        "gather",
        "upsample",
        "prelu",
    }
)

#: Case dtypes, plus float64, which no case names but tests use to check the lowering exactly.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


@dataclass
class Lowered:
    """A lowered graph and the names that tie it back to the IR."""

    module: fx.GraphModule
    input_names: list[str]  #: graph inputs, in the order ``forward`` takes them
    output_names: list[str]  #: graph outputs, in the order ``forward`` returns them
    attr_names: dict[str, str]  #: graph param/const name -> module attribute name
    param_names: list[str]  #: graph params, in graph order

    def parameter(self, name: str) -> nn.Parameter:
        """The ``nn.Parameter`` of graph param ``name``."""
        return getattr(self.module, self.attr_names[name])


def sanitize(name: str, taken: set[str]) -> str:
    """A valid, unused Python identifier for graph node ``name`` (added to ``taken``)."""
    safe = _ident(name)
    base, k = safe, 1
    while safe in taken:
        safe = f"{base}_{k}"
        k += 1
    taken.add(safe)
    return safe


def to_torch(
    array: np.ndarray, dtype: torch.dtype, device: torch.device, channels_last: bool
) -> torch.Tensor:
    """A fresh tensor (never a view of ``array``) in ``dtype`` on ``device``.

    With ``channels_last`` a 4-D tensor gets the NHWC memory format; its logical shape
    stays NCHW.
    """
    host = torch.from_numpy(np.array(array, dtype=np.float64, copy=True))
    tensor = host.to(device=device, dtype=dtype)
    if channels_last and tensor.dim() == 4:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """Float64 NumPy copy of ``tensor`` in logical (NCHW) order."""
    return tensor.detach().to(device="cpu", dtype=torch.float64).contiguous().numpy().copy()


def _ident(name: str) -> str:
    """``name`` as a Python identifier (fx makes it unique)."""
    safe = re.sub(r"\W", "_", name)
    if not safe or safe[0].isdigit() or keyword.iskeyword(safe):
        safe = "_" + safe
    return safe


def _call(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    return fn, args, kwargs


def index_select_nhwc(x: torch.Tensor, axis: int, index: torch.Tensor) -> torch.Tensor:
    """``torch.index_select(x, axis, index)`` of a 4-D ``x`` held channels_last, as a
    channels_last result. ``index_select`` writes a contiguous (NCHW) result whatever its
    input's format, which would hand the rest of the graph NCHW; on the NHWC view the
    selected axis is the physical one and the result, viewed back, is channels_last."""
    nhwc = (0, 2, 3, 1)
    return torch.index_select(x.permute(nhwc), nhwc.index(axis), index).permute(0, 3, 1, 2)


def _check_pool(node: Node) -> None:
    """torch pools need padding <= kernel / 2; the IR allows more."""
    for k, p in zip(node.attrs["kernel"], node.attrs["padding"], strict=True):
        if 2 * p > k:
            raise UnsupportedCase(
                f"torch: {node.op} {node.name!r} pads {p} with kernel {k}; "
                "torch needs padding <= kernel / 2"
            )


def shift_channels(x: torch.Tensor, offsets: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """The IR's ``shift`` (:mod:`convbench_lowering.shift`): zero-pad the plane once, take
    each run of channels from its window, concatenate the runs along the channels."""
    p, windows = shift_windows(offsets)
    height, width = x.shape[-2:]
    xp = F.pad(x, (p, p, p, p)) if p else x
    parts = [xp[win.index(height, width, nhwc=False)] for win in windows]
    return parts[0].contiguous() if len(parts) == 1 else torch.cat(parts, dim=1)


def _torch_pads(pads: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    """The IR's per-axis (before, after) pairs in ``F.pad`` order: last axis first."""
    flat: list[int] = []
    for before, after in reversed(pads):
        flat += [int(before), int(after)]
    while len(flat) > 2 and flat[-2:] == [0, 0]:
        flat = flat[:-2]
    return tuple(flat)


def lower(
    graph: Graph,
    tensors: Mapping[str, np.ndarray],
    *,
    training: bool,
    dtype: torch.dtype,
    device: torch.device,
    channels_last: bool,
) -> Lowered:
    """Build the ``GraphModule`` of ``graph`` with its params and consts from ``tensors``.

    ``training`` selects batch statistics in ``batchnorm`` (and updates the module's own
    running-statistics buffers, as ``nn.BatchNorm2d`` does); otherwise the running
    statistics are used, as in ``eval()``.
    """
    root = nn.Module()
    fg = fx.Graph()
    env: dict[str, fx.Node] = {}
    taken: set[str] = {"self", "forward", "training"}
    attr_names: dict[str, str] = {}
    input_names: list[str] = []
    param_names: list[str] = []

    for node in graph.nodes:
        op = node.op
        if op not in SUPPORTED_OPS:
            raise UnsupportedCase(f"torch: op {op!r} (node {node.name!r}) is not supported")
        a = node.attrs
        ins = [env[i] for i in node.inputs]
        if op == "input":
            input_names.append(node.name)
            env[node.name] = fg.placeholder(sanitize(node.name, taken))
            continue
        if op in ("param", "const"):
            if node.name not in tensors:
                raise ValueError(f"no data for {op} {node.name!r}")
            attr = sanitize(node.name, taken)
            value = to_torch(tensors[node.name], dtype, device, channels_last)
            if op == "param":
                root.register_parameter(attr, nn.Parameter(value))
                param_names.append(node.name)
            else:
                root.register_buffer(attr, value)
            attr_names[node.name] = attr
            env[node.name] = fg.get_attr(attr)
            continue

        if op == "conv2d":
            bias = ins[2] if len(ins) == 3 else None
            out = _call(
                F.conv2d,
                ins[0],
                ins[1],
                bias,
                tuple(a["stride"]),
                tuple(a["padding"]),
                tuple(a["dilation"]),
                int(a["groups"]),
            )
        elif op == "batchnorm":
            x, gamma, beta, mean, var = ins
            if training:
                n, _, *spatial = graph.shape(node.inputs[0])
                if n * math.prod(spatial) == 1:
                    raise UnsupportedCase(
                        f"torch: batchnorm {node.name!r} in training needs more than one "
                        "value per channel (batch 1 and 1x1 spatial)"
                    )
                # Batch statistics; the running statistics are updated in place, so they
                # must be the module's own tensors (buffers are copies of the core's data).
                stats = []
                for src, fxn in zip(node.inputs[3:], (mean, var), strict=True):
                    if graph[src].op != "const":
                        fxn = fg.call_method("clone", (fg.call_method("detach", (fxn,)),))
                    stats.append(fxn)
                mean, var = stats
            out = _call(
                F.batch_norm,
                x,
                mean,
                var,
                gamma,
                beta,
                training,
                float(a.get("momentum", 0.1)),
                float(a.get("eps", 1e-5)),
            )
        elif op == "relu":
            out = _call(F.relu, ins[0])
        elif op == "relu6":
            out = _call(F.relu6, ins[0])
        elif op == "sigmoid":
            out = _call(torch.sigmoid, ins[0])
        elif op == "add":
            out = _call(torch.add, ins[0], ins[1])
        elif op == "mul":
            out = _call(torch.mul, ins[0], ins[1])
        elif op == "concat":
            out = _call(torch.cat, list(ins), dim=int(a["axis"]))
        elif op == "slice":
            start, stop = int(a["start"]), int(a["stop"])
            out = _call(torch.narrow, ins[0], int(a["axis"]), start, stop - start)
        elif op == "avgpool":
            _check_pool(node)
            out = _call(
                F.avg_pool2d,
                ins[0],
                tuple(a["kernel"]),
                tuple(a["stride"]),
                tuple(a["padding"]),
                ceil_mode=False,
                count_include_pad=False,
            )
        elif op == "maxpool":
            _check_pool(node)
            out = _call(
                F.max_pool2d, ins[0], tuple(a["kernel"]), tuple(a["stride"]), tuple(a["padding"])
            )
        elif op == "global_avgpool":
            out = _call(F.adaptive_avg_pool2d, ins[0], 1)
        elif op == "flatten":
            out = _call(torch.flatten, ins[0], 1)
        elif op == "linear":
            bias = ins[2] if len(ins) == 3 else None
            out = _call(F.linear, ins[0], ins[1], bias)
        elif op == "reshape":
            out = _call(torch.reshape, ins[0], tuple(int(d) for d in a["shape"]))
        elif op == "transpose":
            out = _call(torch.permute, ins[0], tuple(int(d) for d in a["perm"]))
        elif op == "pad":
            out = _call(F.pad, ins[0], _torch_pads(tuple(a["pads"])))
        elif op == "shift":
            out = _call(shift_channels, ins[0], tuple(tuple(o) for o in a["offsets"]))
        elif op == "gather":
            # the index list as an int64 buffer of the module (on its device), read by index_select
            attr = sanitize(f"{node.name}.indices", taken)
            root.register_buffer(attr, torch.tensor([int(i) for i in a["indices"]], dtype=torch.long, device=device))
            rank, axis = len(graph.shape(node.inputs[0])), int(a["axis"])
            if channels_last and rank == 4:
                out = _call(index_select_nhwc, ins[0], axis % 4, fg.get_attr(attr))
            else:
                out = _call(torch.index_select, ins[0], axis, fg.get_attr(attr))
        elif op == "upsample":
            # nearest with integer factors: source row floor(h * (1 / sh)), exact for the
            # factors checked (1 - 8); keeps channels_last
            sh, sw = (int(s) for s in a["scale"])
            out = _call(F.interpolate, ins[0], scale_factor=(float(sh), float(sw)), mode="nearest")
        elif op == "prelu":
            # nn.PReLU(num_parameters=C)'s kernel: the (C,) weight on axis 1, any memory format
            out = _call(F.prelu, ins[0], ins[1])
        else:  # pragma: no cover - SUPPORTED_OPS and this chain must agree
            raise UnsupportedCase(f"torch: op {op!r} is not lowered")
        fn, args, kwargs = out
        env[node.name] = fg.call_function(fn, args, kwargs, name=_ident(node.name))

    fg.output(tuple(env[name] for name in graph.outputs))
    module = fx.GraphModule(root, fg, class_name="ConvbenchGraph")
    module.train(training)
    return Lowered(
        module=module,
        input_names=input_names,
        output_names=list(graph.outputs),
        attr_names=attr_names,
        param_names=param_names,
    )
