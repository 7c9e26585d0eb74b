"""One case as a LiteRT ``Interpreter``: the converted model, inputs set once.

The timed step is ``Interpreter.invoke()``: inputs are set once (they persist between
invocations) and outputs are read only by :meth:`LitertPrepared.check`, so a step times
the model. ``xnnpack`` runs the default op resolver (the XNNPACK delegate applied, with
``num_threads`` threads); ``reference`` runs ``OpResolverType.BUILTIN_REF``, TFLite's
reference kernels, single-threaded, no delegate. Activations are NHWC (TFLite's only
layout): NCHW data is converted once at the boundary, outside the timed step.

This module imports ai_edge_litert and tensorflow; :mod:`convbench_litert.backend`
imports it lazily.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from convbench_lowering.layout import to_logical, to_physical

from convbench.backend import Prepared, UnsupportedCase
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph
from convbench_litert.convert import convert

RESOLVERS = {"xnnpack": OpResolverType.AUTO, "reference": OpResolverType.BUILTIN_REF}


def _tensor_name(name: str) -> str:
    """A TFLite tensor name without the ``serving_default_`` prefix and ``:0`` suffix."""
    return name.removeprefix("serving_default_").split(":")[0]


class LitertPrepared(Prepared):
    """A TFLite model of the case's graph in an Interpreter."""

    def __init__(self, case: Case, graph: Graph, tensors: Tensors, execution: str, threads: int) -> None:
        import ai_edge_litert
        import tensorflow as tf

        self.case = case
        self.graph = graph
        self.converted = convert(graph, tensors, case.dtype)
        plan = self.converted.plan
        try:
            self.interpreter = Interpreter(
                model_content=self.converted.model, num_threads=int(threads), experimental_op_resolver_type=RESOLVERS[execution]
            )
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:  # e.g. an op without a kernel in this resolver
            raise UnsupportedCase(f"litert: the interpreter refused the model: {str(exc).strip().splitlines()[0][:300]}") from exc
        half = case.dtype == "float16"
        for detail in self.interpreter.get_input_details():
            name = self.converted.inputs[_tensor_name(detail["name"])]
            value = np.asarray(tensors[name])
            if half:  # the case's data is float16 values; the model's inputs are float32
                value = value.astype(np.float16)
            self.interpreter.set_tensor(detail["index"], to_physical(value, plan.perms[name]).astype(detail["dtype"]))
        self._outputs = [
            (self.converted.outputs[_tensor_name(d["name"])], d["index"]) for d in self.interpreter.get_output_details()
        ]
        ops = Counter(op["op_name"] for op in self.interpreter._get_ops_details())
        delegated = ops.pop("DELEGATE", 0)
        self._details: dict[str, Any] = {
            "ai_edge_litert": getattr(ai_edge_litert, "__version__", None),
            "converter": f"tensorflow {tf.__version__} TFLiteConverter.from_concrete_functions",
            "convert_seconds": round(self.converted.seconds, 3),
            "model_bytes": len(self.converted.model),
            "op_resolver": RESOLVERS[execution].name,
            "model_ops": dict(sorted(ops.items())),
            "layout_requested": case.layout,
            "layout_used": "nhwc",
            "weight_layout": "HWIO when traced (the converter stores TFLite's OHWI, 1HWO for depthwise)",
        }
        if execution == "xnnpack":
            self._details["num_threads"] = int(threads)
            self._details["xnnpack_partitions"] = delegated
            if not delegated:
                self._details["xnnpack_note"] = "the XNNPACK delegate took no op: every op ran a builtin kernel"
        else:
            self._details["num_threads"] = 1
            self._details["threads_note"] = "TFLite's reference kernels are single-threaded"
        if case.layout != "nhwc":
            self._details["layout_note"] = "TFLite runs NHWC only: the NCHW data converted once at the boundary, outside the timed step"
        if half:
            self._details["half_precision"] = (
                "the converter's float16 quantization: weights stored float16 and dequantized to float32, "
                "inputs float16 values passed as float32, activations and arithmetic float32 "
                "(XNNPACK may compute in float16 only on CPUs with native float16 arithmetic)"
            )

    def step(self) -> None:
        self.interpreter.invoke()

    def check(self) -> dict[str, np.ndarray]:
        self.step()
        plan = self.converted.plan
        return {
            name: to_logical(np.asarray(self.interpreter.get_tensor(index), dtype=np.float64), plan.perms[name])
            for name, index in self._outputs
        }

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def close(self) -> None:
        self.interpreter = None  # type: ignore[assignment]
