"""Lowering of the IR to an ONNX model with ``onnx.helper``: one function per op (:data:`OPS`).

Imports ``onnx`` only (never onnxruntime), so ``convbench export`` can use it anywhere.

* opset :data:`OPSET` (default domain); every op is a standard ONNX operator: Conv
  (``group``, symmetric ``pads``), BatchNormalization (inference: running statistics),
  Relu, Clip(0, 6), Sigmoid, Add, Mul (NumPy broadcasting), Concat, Slice, AveragePool
  (``count_include_pad=0``), MaxPool (ONNX pads max pooling with -inf), GlobalAveragePool,
  Flatten(axis=1), Gemm(transB=1), Reshape, Transpose, Pad (constant zeros) and ``shift``
  as Pad + one Slice per run of channels sharing an offset + Concat; ``gather`` as
  Gather (int64 indices); ``upsample`` as Resize (nearest, asymmetric coordinates,
  ``nearest_mode=floor``: source pixel floor(h / sh), the IR's), its scales a float32
  initializer (1, 1, sh, sw); ``prelu`` as PRelu, its (C,) slope reshaped to (C, 1, 1)
  (ONNX broadcasts the slope against the trailing axes);
* graph ``input`` nodes become model inputs, ``param`` and ``const`` nodes initializers
  (weights are the convbench data given, so an exported model computes what a run
  verified), graph outputs model outputs, all float32;
* ONNX operators are NCHW. With ``layout="nhwc"`` the model's rank-4 inputs and outputs
  are NHWC and a Transpose at each boundary converts them, as an NHWC model exported to
  ONNX has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from convbench_lowering.drive import OpFn, Site, compile_program
from convbench_lowering.layout import NHWC, Converter, inverse, plan_layouts, to_physical
from convbench_lowering.shift import shift_windows
from onnx import TensorProto, helper, numpy_helper

from convbench.graph import Graph

OPSET = 17
ELEM = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}
NP = {"float32": np.float32, "float16": np.float16}


@dataclass
class Builder:
    """Nodes and initializers of the ONNX graph being built; values are tensor names."""

    dtype: str = "float32"
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    _count: int = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"_cb{self._count}/{hint}"

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        output = output or self.fresh(op)
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{op}:{output}", **attrs))
        return output

    def constant(self, value: np.ndarray, hint: str = "const", name: str | None = None) -> str:
        name = name or self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def ints(self, values: list[int], hint: str) -> str:
        return self.constant(np.asarray(values, dtype=np.int64), hint)


def converter(b: Builder) -> Converter:
    return Converter(
        lambda x, perm: b.node("Transpose", [x], perm=list(perm)),
        lambda x, shape: b.node("Reshape", [x, b.ints(list(shape), "shape")]),
    )


def _pads(padding: Any) -> list[int]:
    ph, pw = int(padding[0]), int(padding[1])
    return [ph, pw, ph, pw]


def _named(site: Site) -> str:
    return site.node.name


def conv2d(b: Builder, site: Site, ins: list[str]) -> str:
    a = site.attrs
    kh, kw = site.in_shapes[1][2:]
    return b.node(
        "Conv", ins, _named(site), group=int(a["groups"]), kernel_shape=[kh, kw], pads=_pads(a["padding"]),
        strides=[int(s) for s in a["stride"]], dilations=[int(d) for d in a["dilation"]],
    )  # fmt: skip


def batchnorm(b: Builder, site: Site, ins: list[str]) -> str:
    return b.node("BatchNormalization", ins, _named(site), epsilon=float(site.attrs.get("eps", 1e-5)))


def relu6(b: Builder, site: Site, ins: list[str]) -> str:
    lo = b.constant(np.array(0.0, dtype=NP[b.dtype]), "zero")
    hi = b.constant(np.array(6.0, dtype=NP[b.dtype]), "six")
    return b.node("Clip", [ins[0], lo, hi], _named(site))


def concat(b: Builder, site: Site, ins: list[str]) -> str:
    return b.node("Concat", ins, _named(site), axis=int(site.attrs["axis"]))


def slice_(b: Builder, site: Site, ins: list[str]) -> str:
    a = site.attrs
    starts, ends, axes = b.ints([a["start"]], "starts"), b.ints([a["stop"]], "ends"), b.ints([a["axis"]], "axes")
    return b.node("Slice", [ins[0], starts, ends, axes], _named(site))


def _pool(op: str) -> OpFn:
    def fn(b: Builder, site: Site, ins: list[str]) -> str:
        a = site.attrs
        attrs: dict[str, Any] = {"kernel_shape": [int(k) for k in a["kernel"]], "pads": _pads(a["padding"]), "strides": [int(s) for s in a["stride"]]}
        if op == "AveragePool":
            attrs["count_include_pad"] = 0
        return b.node(op, ins, _named(site), **attrs)

    return fn


def linear(b: Builder, site: Site, ins: list[str]) -> str:
    return b.node("Gemm", ins, _named(site), transB=1)


def _simple(op: str) -> OpFn:
    return lambda b, site, ins: b.node(op, ins, _named(site))


def pad(b: Builder, site: Site, ins: list[str]) -> str:
    pairs = [(int(x), int(y)) for x, y in site.attrs["pads"]]
    pads = b.ints([x for x, _ in pairs] + [y for _, y in pairs], "pads")
    return b.node("Pad", [ins[0], pads], _named(site), mode="constant")


def shift(b: Builder, site: Site, ins: list[str]) -> str:
    """Pad H and W once by the largest offset, Slice each run of channels (start, stop,
    dy, dx) from its window, ``out[h, w] = x[h - dy, w - dx]``, Concat the runs."""
    p, windows = shift_windows(site.attrs["offsets"])
    h, w = site.in_shapes[0][2:]
    x = b.node("Pad", [ins[0], b.ints([0, 0, p, p, 0, 0, p, p], "pads")], mode="constant") if p else ins[0]
    axes = b.ints([1, 2, 3], "axes")
    parts = [
        b.node("Slice", [x, b.ints(list(win.begin()), "starts"), b.ints(list(win.end(h, w)), "ends"), axes])
        for win in windows
    ]
    if len(parts) == 1:
        return b.node("Identity", parts, _named(site))
    return b.node("Concat", parts, _named(site), axis=1)


def gather(b: Builder, site: Site, ins: list[str]) -> str:
    """``Gather`` along the axis with the node's index list as an int64 initializer."""
    indices = b.ints([int(i) for i in site.attrs["indices"]], "indices")
    return b.node("Gather", [ins[0], indices], _named(site), axis=int(site.attrs["axis"]))


def upsample(b: Builder, site: Site, ins: list[str]) -> str:
    """``Resize`` with ``out[h, w] = x[floor(h / sh), floor(w / sw)]`` (no roi)."""
    sh, sw = (int(s) for s in site.attrs["scale"])
    scales = b.constant(np.array([1.0, 1.0, sh, sw], dtype=np.float32), "scales")
    return b.node(
        "Resize", [ins[0], "", scales], _named(site),
        mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor",
    )  # fmt: skip


def prelu(b: Builder, site: Site, ins: list[str]) -> str:
    """``PRelu`` with the (C,) slope reshaped so it broadcasts along axis 1: (C, 1, 1) for
    an NCHW input (unidirectional broadcasting aligns trailing axes), (C,) for (N, C)."""
    rank = len(site.in_shapes[0])
    slope = ins[1]
    if rank > 2:
        slope = b.node("Reshape", [slope, b.ints([-1] + [1] * (rank - 2), "slope_shape")])
    return b.node("PRelu", [ins[0], slope], _named(site))


#: The op table: every IR op this lowering knows.
OPS: dict[str, OpFn] = {
    "conv2d": conv2d,
    "batchnorm": batchnorm,
    "relu": _simple("Relu"),
    "relu6": relu6,
    "sigmoid": _simple("Sigmoid"),
    "add": _simple("Add"),
    "mul": _simple("Mul"),
    "concat": concat,
    "slice": slice_,
    "avgpool": _pool("AveragePool"),
    "maxpool": _pool("MaxPool"),
    "global_avgpool": _simple("GlobalAveragePool"),
    "flatten": lambda b, site, ins: b.node("Flatten", ins, _named(site), axis=1),
    "linear": linear,
    "reshape": lambda b, site, ins: b.node("Reshape", [ins[0], b.ints([int(d) for d in site.attrs["shape"]], "shape")], _named(site)),
    "transpose": lambda b, site, ins: b.node("Transpose", ins, _named(site), perm=[int(a) for a in site.attrs["perm"]]),
    "pad": pad,
    "shift": shift,
    "gather": gather,
    "upsample": upsample,
    "prelu": prelu,
}


@dataclass
class Model:
    """An ONNX model of a graph, with the perm of each model input and output."""

    proto: onnx.ModelProto
    input_perms: dict[str, Any]
    output_perms: dict[str, Any]


def build_model(graph: Graph, tensors: Mapping[str, np.ndarray], *, layout: str = "nchw", dtype: str = "float32", name: str = "convbench") -> Model:
    """The ONNX model of ``graph`` (inference) with weights from ``tensors``.

    Raises :class:`convbench.backend.UnsupportedCase` naming any op without a lowering.
    """
    b = Builder(dtype)
    plan = plan_layouts(graph)  # ONNX operators are NCHW: every value in logical order
    program = compile_program(graph, plan, OPS, converter(b), "onnxruntime")
    boundary = NHWC if layout == "nhwc" else None
    inputs, sources, input_perms = [], {}, {}
    for node in graph.inputs:
        perm = boundary if len(node.shape) == 4 else None
        shape = list(np.empty(node.shape).transpose(perm).shape) if perm else list(node.shape)
        inputs.append(helper.make_tensor_value_info(node.name, ELEM[dtype], shape))
        sources[node.name] = b.node("Transpose", [node.name], perm=list(inverse(perm))) if perm else node.name
        input_perms[node.name] = perm
    for node in [*graph.params, *graph.consts]:
        sources[node.name] = b.constant(np.asarray(tensors[node.name], dtype=NP[dtype]), name=node.name)
    results = program.run(b, sources)
    outputs, output_perms = [], {}
    for out, value in zip(graph.outputs, results, strict=True):
        shape = graph.shape(out)
        perm = boundary if len(shape) == 4 else None
        final = f"{out}:output"
        if perm:
            b.node("Transpose", [value], final, perm=list(perm))
            shape = tuple(np.empty(shape).transpose(perm).shape)
        else:
            b.node("Identity", [value], final)
        outputs.append(helper.make_tensor_value_info(final, ELEM[dtype], list(shape)))
        output_perms[final] = perm
    onnx_graph = helper.make_graph(b.nodes, name, inputs, outputs, b.initializers)
    proto = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="convbench")
    proto.ir_version = min(proto.ir_version, 8)  # readable by older runtimes; opset 17 needs IR 8
    return Model(proto, input_perms, output_perms)


def physical_inputs(model: Model, tensors: Mapping[str, np.ndarray], dtype: str = "float32") -> dict[str, np.ndarray]:
    """The model's input arrays (NHWC where the model takes NHWC) from logical data."""
    return {name: to_physical(np.asarray(tensors[name]), perm).astype(NP[dtype]) for name, perm in model.input_perms.items()}
