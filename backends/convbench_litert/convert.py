"""A graph as a TFLite model: the tensorflow backend's lowering, traced and converted.

The graph is lowered by :mod:`convbench_tensorflow.lower` (its op table, in NHWC with
HWIO weights: TFLite's layouts) inside a ``tf.function`` whose arguments are the graph's
inputs and whose params and consts are the case's seeded arrays as constants, so the
model holds the same weights as every other backend. ``tf.lite.TFLiteConverter.
from_concrete_functions`` converts it to builtin ops; weight-only subgraphs (a
diagonalwise weight, ``mul(param, mask)``) are folded into constants by the converter.
float16 is the converter's float16 quantization: weights stored in float16 with
DEQUANTIZE ops, activations float32.

This module imports tensorflow; :mod:`convbench_litert.prepared` imports it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from convbench_lowering.drive import compile_program
from convbench_lowering.layout import HWIO, NHWC, LayoutPlan, plan_layouts, to_physical
from convbench_tensorflow.lower import OPS, Context, converter

from convbench.backend import UnsupportedCase
from convbench.data import Tensors
from convbench.graph import Graph


@dataclass
class Converted:
    """A TFLite flatbuffer and how its tensors relate to the graph's values."""

    model: bytes
    plan: LayoutPlan
    #: model input name -> graph input name
    inputs: dict[str, str]
    #: model output name -> graph output name
    outputs: dict[str, str]
    seconds: float


def convert(graph: Graph, tensors: Tensors, dtype: str) -> Converted:
    """Lower ``graph`` with ``tensors`` baked in and convert it (``dtype`` float32 or float16)."""
    plan = plan_layouts(graph, NHWC, HWIO)
    program = compile_program(graph, plan, OPS, converter(), "litert")

    def physical(name: str) -> np.ndarray:
        return to_physical(np.asarray(tensors[name]), plan.perms[name]).astype(np.float32)

    constants = {n.name: tf.constant(physical(n.name)) for n in [*graph.params, *graph.consts]}
    names = [n.name for n in graph.inputs]
    arg_names = [f"input_{i}" for i in range(len(names))]
    signature = [tf.TensorSpec(physical(n).shape, tf.float32, name=a) for n, a in zip(names, arg_names, strict=True)]

    def forward(*args: tf.Tensor) -> list[tf.Tensor]:
        sources = dict(constants)
        sources.update(zip(names, args, strict=True))
        return program.run(Context(False, tf.float32), sources)

    function = tf.function(forward, input_signature=signature, autograph=False)
    concrete = function.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], function)
    if dtype == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    start = time.perf_counter()
    try:
        model = conv.convert()
    except Exception as exc:  # an op the converter or the builtin op set cannot take
        raise UnsupportedCase(f"litert: the TFLite converter failed: {str(exc).strip().splitlines()[-1][:300]}") from exc
    seconds = time.perf_counter() - start
    outputs = {t.name.split(":")[0]: name for t, name in zip(concrete.outputs, graph.outputs, strict=True)}
    return Converted(model, plan, dict(zip(arg_names, names, strict=True)), outputs, seconds)
