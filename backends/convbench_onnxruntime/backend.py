"""The ``onnxruntime`` backend plugin: availability, environment, skip rules and ``prepare``.

The IR is lowered to an ONNX model with ``onnx.helper`` (:mod:`convbench_onnxruntime.
onnx_graph`) and run by an ``InferenceSession``: the CPU execution provider, and CUDA
where ``onnxruntime-gpu`` provides it. Executions are graph optimization levels
(:data:`EXECUTIONS`): ``disabled`` (``ORT_DISABLE_ALL``: the graph as lowered, node by
node), ``basic``, ``extended``, ``layout`` and ``all`` (``ORT_ENABLE_*``); ``eager`` is
``disabled`` and ``compiled`` is ``all``. Training is not part of the inference runtime:
training cases are skipped with that reason.

Dtypes: float32 and float16. The CPU execution provider has float16 kernels for few
operators (on x86 not Conv): for the others ONNX Runtime inserts Casts and computes in
float32; ``details()["half_precision"]`` names those operators. bfloat16 is skipped: ONNX's
Conv, pools and BatchNormalization (opset 17) do not take it, and the CPU provider has no
bfloat16 kernels for them.
"""

from __future__ import annotations

from typing import Any

from convbench.backend import (
    BackendInfo,
    Conformance,
    InferenceOnlyBackend,
    Prepared,
    UnsupportedCase,
)
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph

INSTALL_HINT = "pip install 'convbench[onnxruntime]' (onnxruntime-gpu for CUDA)"
#: case execution -> the level it runs (aliases: eager = disabled, compiled = all)
EXECUTIONS = {
    "disabled": "disabled",
    "basic": "basic",
    "extended": "extended",
    "layout": "layout",
    "all": "all",
    "eager": "disabled",
    "compiled": "all",
}
#: What each level is (the vocabulary of `convbench list`).
EXECUTION_DESCRIPTIONS = {
    "disabled": "graph optimizations disabled (ORT_DISABLE_ALL): the graph as lowered, the same as its eager",
    "basic": "ORT_ENABLE_BASIC (constant folding, redundant node elimination)",
    "extended": "ORT_ENABLE_EXTENDED (basic + fusions such as Conv+Add+Relu)",
    "layout": "ORT_ENABLE_LAYOUT (extended + layout transformations, e.g. NCHWc on CPU)",
    "all": "ORT_ENABLE_ALL (every optimization), the same as its compiled",
}
#: level -> onnxruntime.GraphOptimizationLevel member name
LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",
    "all": "ORT_ENABLE_ALL",
}
DTYPES = ("float32", "float16")
BFLOAT16_REASON = (
    "onnxruntime: no bfloat16: ONNX's Conv, pools and BatchNormalization (opset 17) do not take "
    "bfloat16, and the CPU execution provider has no bfloat16 kernels for them"
)
TRAINING_REASON = (
    "onnxruntime: training is not part of the ONNX Runtime inference package (it needs "
    "onnxruntime-training's artifacts); this backend runs inference only"
)


class OnnxruntimeBackend(InferenceOnlyBackend):
    """ONNX Runtime: CPU (and CUDA) execution providers, graph optimization levels."""

    name = "onnxruntime"
    dtypes = DTYPES
    training_reason = TRAINING_REASON
    bfloat16_reason = BFLOAT16_REASON
    install_hint = INSTALL_HINT
    requires = ("onnx", "onnxruntime")
    executions = EXECUTIONS
    execution_descriptions = EXECUTION_DESCRIPTIONS
    conformance = Conformance(cannot=(("mode", "training", "runs inference only"),), boundary_layout="ONNX operators are NCHW: NHWC is a Transpose at each boundary of the same model")

    def __init__(self) -> None:
        self._info: BackendInfo | None = None
        self._threads: int | None = None

    def probe(self) -> BackendInfo:
        import onnx
        import onnxruntime as ort

        providers = ort.get_available_providers()
        env: dict[str, Any] = {
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "providers": providers,
            "device": ort.get_device(),
        }
        devices = ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in providers else [])
        return BackendInfo(self.name, True, version=ort.__version__, devices=devices, environment=env)


    def prepare(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> Prepared:
        reason = self.skip_reason(case)
        if reason is not None:
            raise UnsupportedCase(reason)
        from convbench_onnxruntime.prepared import OnnxruntimePrepared

        level = EXECUTIONS[case.execution]
        import onnxruntime as ort

        if not hasattr(ort.GraphOptimizationLevel, LEVELS[level]):
            raise UnsupportedCase(f"onnxruntime: version {ort.__version__} has no {LEVELS[level]} level ({level})")
        return OnnxruntimePrepared(case, graph, tensors, LEVELS[level], self._threads)
