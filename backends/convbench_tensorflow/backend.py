"""The ``tensorflow`` backend plugin: availability, environment, skip rules and ``prepare``.

Executions (:data:`EXECUTIONS`): ``eager`` runs op by op; ``graph`` is ``tf.function``
without XLA (TensorFlow's graph executor with Grappler's rewrites); ``xla`` is
``tf.function(jit_compile=True)``, and ``compiled`` (each backend's default compiled form)
is ``xla`` here. Dtypes: float32, float16 and bfloat16 on CPU and GPU (TensorFlow has CPU
kernels of every op in both half types; batch norm keeps its statistics in float32, as
TensorFlow's fused kernel requires).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from convbench.backend import Backend, BackendInfo, Prepared, UnsupportedCase
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph

INSTALL_HINT = "pip install 'convbench[tensorflow]'"
#: case execution -> form of :class:`~convbench_tensorflow.prepared.TensorflowPrepared`.
EXECUTIONS = {"eager": "eager", "graph": "graph", "xla": "xla", "compiled": "xla"}
#: What each execution is here (the vocabulary of `convbench list`).
EXECUTION_DESCRIPTIONS = {
    "graph": "tf.function without XLA (TensorFlow's graph executor, Grappler's rewrites)",
    "xla": "tf.function(jit_compile=True), the same as its compiled",
}
DTYPES = ("float32", "float16", "bfloat16")


class TensorflowBackend(Backend):
    """TensorFlow 2: eager, tf.function or XLA; CPU, or CUDA when TensorFlow sees a GPU."""

    name = "tensorflow"
    install_hint = INSTALL_HINT
    requires = ("tensorflow",)
    executions = EXECUTIONS
    execution_descriptions = EXECUTION_DESCRIPTIONS

    def __init__(self) -> None:
        self._info: BackendInfo | None = None
        self._threads: int | None = None  #: intra-op threads the runtime was started with
        self._wanted_threads: int | None = None  #: what the current case asks for

    def import_error(self) -> str | None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before the first import
        return super().import_error()

    def probe(self) -> BackendInfo:
        import tensorflow as tf

        try:
            gpus = tf.config.list_physical_devices("GPU")
            for gpu in gpus:  # before the runtime starts: allocate as needed, not all at once
                tf.config.experimental.set_memory_growth(gpu, True)
            return BackendInfo(
                self.name, True, version=tf.__version__, devices=["cpu"] + (["cuda"] if gpus else []), environment=_environment(gpus)
            )
        except Exception as exc:  # (info() would say so too, without the version)
            return BackendInfo(self.name, False, version=tf.__version__, reason=f"tensorflow failed to report devices: {exc}")

    def set_threads(self, threads: int | None) -> None:
        """Intra-op threads; TensorFlow fixes them when its runtime starts (first case)."""
        self._wanted_threads = threads
        if threads is None:
            return
        if threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        import tensorflow as tf

        if self._threads is None:
            with contextlib.suppress(RuntimeError):  # started: _threads records what it runs
                tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            # 0 is TensorFlow's default: one thread per logical core
            self._threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()

    def skip_reason(self, case: Case) -> str | None:
        reason = super().skip_reason(case)
        if reason is not None:
            return reason
        if case.variant == "kernel":
            return "tensorflow: no hand-written kernel variant is implemented in this backend"
        if case.dtype not in DTYPES:
            return f"tensorflow: only {', '.join(DTYPES)} is implemented in this backend (asked {case.dtype})"
        return None

    def prepare(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> Prepared:
        reason = self.skip_reason(case)
        if reason is not None:
            raise UnsupportedCase(reason)
        wanted = self._wanted_threads
        if wanted is not None and self._threads is not None and self._threads != wanted:
            raise UnsupportedCase(
                f"tensorflow: this worker's runtime runs {self._threads} intra-op threads, fixed at start; "
                f"{wanted} threads need their own run"
            )
        reason = dilated_training_reason(case, graph)
        if reason is not None:
            raise UnsupportedCase(reason)
        from convbench_tensorflow.prepared import TensorflowPrepared

        return TensorflowPrepared(case, graph, tensors, cotangents, EXECUTIONS[case.execution], case.dtype)


def dilated_training_reason(case: Case, graph: Graph) -> str | None:
    """Why TensorFlow cannot train ``graph`` on this case's CPU outside XLA, or None.

    Its CPU kernels for the gradient of ``tf.nn.conv2d`` (``Conv2DBackpropInput``) refuse
    dilation rates above 1 ("Current CPU implementations do not yet support dilation
    rates larger than 1"), and the lowering runs every dilated conv but a stride-1
    depthwise one through ``tf.nn.conv2d``: a dense or grouped conv (diagonalwise's
    too), and a depthwise conv with stride (``depthwise_conv2d`` refuses stride and
    dilation together). XLA compiles them."""
    if case.mode != "training" or case.device != "cpu" or EXECUTIONS.get(case.execution) == "xla":
        return None
    for node in graph.nodes:
        if node.op != "conv2d" or tuple(node.attrs.get("dilation", (1, 1))) == (1, 1):
            continue
        c = graph.shape(node.inputs[0])[1]
        depthwise = node.attrs.get("groups") == c and c > 1 and graph.shape(node.inputs[1])[1] == 1
        if not depthwise or tuple(node.attrs.get("stride", (1, 1))) != (1, 1):
            return (
                f"tensorflow: {node.name}: a dilated conv it runs as tf.nn.conv2d cannot be trained on the CPU "
                f"outside XLA (its Conv2DBackpropInput kernel supports dilation 1 only); the xla execution can"
            )
    return None


def _environment(gpus: list[Any]) -> dict[str, Any]:
    import tensorflow as tf

    build = {}
    with contextlib.suppress(Exception):
        build = dict(tf.sysconfig.get_build_info())
    env: dict[str, Any] = {
        "tensorflow": tf.__version__,
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
        "gpus": [],
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 CPUs)"),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }
    for gpu in gpus:
        try:
            env["gpus"].append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except Exception:
            env["gpus"].append(gpu.name)
    return env
