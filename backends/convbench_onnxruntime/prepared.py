"""One case as an ONNX Runtime ``InferenceSession``: inputs bound once, outputs on the device.

The timed step is ``run_with_iobinding``: inputs are bound once as device ``OrtValue``s
and outputs stay on the device, so a step times the model, not host copies. Threads:
``intra_op_num_threads`` is the case's thread count, sequential execution (one node at a
time), as the other backends run. On CUDA, float32 convolutions are kept IEEE (no TF32).

This module imports onnxruntime; :mod:`convbench_onnxruntime.backend` imports it lazily.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from convbench_lowering.layout import to_logical

from convbench.backend import Prepared, UnsupportedCase
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph
from convbench_onnxruntime.onnx_graph import OPSET, build_model, physical_inputs


class OnnxruntimePrepared(Prepared):
    """An ONNX model of the case's graph in an InferenceSession."""

    def __init__(self, case: Case, graph: Graph, tensors: Tensors, level: str, threads: int | None) -> None:
        self.case = case
        self.graph = graph
        self.model = build_model(graph, tensors, layout=case.layout, dtype=case.dtype, name=case.workload)
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        if case.device == "cuda":
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        half = case.dtype != "float32"
        with tempfile.TemporaryDirectory(prefix="convbench-ort-") as tmp:
            if half:  # to see where ONNX Runtime fell back to float32 (see half_precision)
                options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            start = time.perf_counter()
            try:
                self.session = ort.InferenceSession(self.model.proto.SerializeToString(), options, providers=providers)
            except Exception as exc:  # e.g. NOT_IMPLEMENTED: no kernel for an op in this dtype
                if "NOT_IMPLEMENTED" in str(exc):
                    raise UnsupportedCase(f"onnxruntime: {str(exc).splitlines()[0][:300]}") from exc
                raise
            seconds = time.perf_counter() - start
            fallback = _float32_fallback(Path(options.optimized_model_filepath)) if half else None
        used = self.session.get_providers()
        if case.device == "cuda" and "CUDAExecutionProvider" not in used:
            raise UnsupportedCase(f"onnxruntime: the CUDA execution provider did not load (providers {used})")
        self._device = "cuda" if case.device == "cuda" else "cpu"
        self.binding = self.session.io_binding()
        self._inputs = physical_inputs(self.model, tensors, case.dtype)
        self._values = {
            name: ort.OrtValue.ortvalue_from_numpy(value, self._device, 0) for name, value in self._inputs.items()
        }
        for name, value in self._values.items():
            self.binding.bind_ortvalue_input(name, value)
        self.output_names = [o.name for o in self.session.get_outputs()]
        for name in self.output_names:
            self.binding.bind_output(name, self._device)
        self._details: dict[str, Any] = {
            "onnxruntime": ort.__version__,
            "opset": OPSET,
            "providers": used,
            "graph_optimization_level": level,
            "session_seconds": round(seconds, 3),
            "intra_op_threads": threads,
            "execution_mode": "sequential",
            "layout_requested": case.layout,
            "layout_used": "nchw",
            "nodes": len(self.model.proto.graph.node),
        }
        if case.layout == "nhwc":
            self._details["layout_note"] = (
                "ONNX operators are NCHW: the model takes and returns NHWC tensors with a Transpose "
                "at each boundary (inside the timed step); ONNX Runtime may change layouts internally"
            )
        if case.device == "cuda":
            self._details["tf32"] = False
        if fallback:
            ops, casts = fallback
            self._details["half_precision"] = (
                f"{case.dtype} model, but ONNX Runtime's {case.device.upper()} execution provider "
                f"has no {case.dtype} kernel for {', '.join(ops)}: it inserted {casts} Casts and computes those in float32"
            )
        elif half:
            self._details["half_precision"] = f"every node runs a {case.dtype} kernel"

    def step(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def sync(self) -> None:
        if self._device == "cuda":
            self.binding.synchronize_outputs()

    def check(self) -> dict[str, np.ndarray]:
        self.step()
        self.sync()
        outs = self.binding.copy_outputs_to_cpu()
        got = {}
        for ir_name, onnx_name, value in zip(self.graph.outputs, self.output_names, outs, strict=True):
            got[ir_name] = to_logical(np.asarray(value, dtype=np.float64), self.model.output_perms[onnx_name])
        return got

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def close(self) -> None:
        self.binding = None  # type: ignore[assignment]
        self._values = {}
        self.session = None  # type: ignore[assignment]


def _float32_fallback(optimized: Path) -> tuple[list[str], int] | None:
    """(operators, Cast count) where ONNX Runtime inserted Casts to run a half model's
    operators in float32 (the lowering emits no Cast), from the optimized model it saved."""
    import onnx

    if not optimized.is_file():
        return None
    graph = onnx.load(str(optimized), load_external_data=False).graph
    casts = [n for n in graph.node if n.op_type == "Cast"]
    to_float = {o for n in casts if any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute) for o in n.output}
    ops = sorted({n.op_type for n in graph.node if n.op_type != "Cast" and to_float & set(n.input)})
    return (ops, len(casts)) if ops else None
