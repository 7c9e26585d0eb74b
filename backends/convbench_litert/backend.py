"""The ``litert`` backend plugin: availability, environment, skip rules and ``prepare``.

A case's graph is lowered to TensorFlow by the tensorflow backend's op table
(:mod:`convbench_tensorflow.lower`), traced as a ``tf.function`` whose weights are the
case's seeded arrays (constants), converted by TensorFlow's TFLite converter
(:mod:`convbench_litert.convert`) and run by ``ai_edge_litert.interpreter.Interpreter``
(:mod:`convbench_litert.prepared`). Executions (:data:`EXECUTIONS`): ``xnnpack``, the
interpreter's default (the XNNPACK delegate takes the ops it supports, TFLite's builtin
kernels the rest), and ``reference``, TFLite's reference kernels
(``OpResolverType.BUILTIN_REF``, no delegate).

Inference only, on the CPU: the interpreter has no training. float32, and float16 as the
converter offers it (weights stored in float16, dequantized to float32: ``details()
["half_precision"]``); bfloat16 is skipped.
"""

from __future__ import annotations

import os
from typing import Any

from convbench.backend import (
    BackendInfo,
    Conformance,
    InferenceOnlyBackend,
    Prepared,
    UnsupportedCase,
)
from convbench.cases import Case
from convbench.cpu_topology import available_cpus
from convbench.data import Tensors
from convbench.graph import Graph

#: The version pinned in pyproject's ``litert`` extra.
LITERT_PIN = "ai-edge-litert==2.3.0"
INSTALL_HINT = "pip install 'convbench[litert]' (ai-edge-litert; TensorFlow's converter makes the models)"
#: case execution -> the interpreter's op resolver it runs
EXECUTIONS = {"xnnpack": "xnnpack", "reference": "reference"}
EXECUTION_DESCRIPTIONS = {
    "xnnpack": "the interpreter's default, the XNNPACK delegate (builtin kernels for the ops it does not take)",
    "reference": "TFLite's reference kernels (OpResolverType.BUILTIN_REF), no delegate",
}
DTYPES = ("float32", "float16")
TRAINING_REASON = "litert: the LiteRT interpreter runs inference only (no gradients, no optimizer); training is not in this backend"
BFLOAT16_REASON = (
    "litert: no bfloat16: the TFLite converter quantizes weights to float16 or integers only, "
    "and LiteRT's builtin kernels have no bfloat16"
)


class LitertBackend(InferenceOnlyBackend):
    """LiteRT (TensorFlow Lite): the XNNPACK delegate or the reference kernels, on the CPU."""

    name = "litert"
    dtypes = DTYPES
    training_reason = TRAINING_REASON
    bfloat16_reason = BFLOAT16_REASON
    install_hint = INSTALL_HINT
    requires = ("ai_edge_litert.interpreter", "tensorflow")
    executions = EXECUTIONS
    execution_descriptions = EXECUTION_DESCRIPTIONS
    conformance = Conformance(exempt="inference only, and no eager execution: tests/test_litert_backend.py verifies its cases instead")

    def __init__(self) -> None:
        self._info: BackendInfo | None = None
        self._threads: int | None = None

    def import_error(self) -> str | None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before the first import
        return super().import_error()

    def probe(self) -> BackendInfo:
        from importlib.metadata import version

        import ai_edge_litert
        import tensorflow as tf

        litert = getattr(ai_edge_litert, "__version__", None) or version("ai-edge-litert")
        env: dict[str, Any] = {
            "ai_edge_litert": litert,
            "converter": f"tensorflow {tf.__version__} (tf.lite.TFLiteConverter)",
            "executions": {"xnnpack": "OpResolverType.AUTO (XNNPACK delegate)", "reference": "OpResolverType.BUILTIN_REF"},
            "cpu_threads": len(available_cpus()),
        }
        return BackendInfo(self.name, True, version=litert, devices=["cpu"], environment=env)


    def prepare(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> Prepared:
        reason = self.skip_reason(case)
        if reason is not None:
            raise UnsupportedCase(reason)
        from convbench_litert.prepared import LitertPrepared

        return LitertPrepared(case, graph, tensors, EXECUTIONS[case.execution], self._threads or len(available_cpus()))
