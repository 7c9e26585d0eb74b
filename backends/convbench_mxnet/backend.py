"""The ``mxnet`` backend plugin: availability, environment, skip rules and ``prepare``.

MXNet 1.9.1 (its last release) with Gluon: ``eager`` runs blocks imperatively,
``hybridized`` (and ``compiled``, its alias) hybridizes them. Dtypes: float32 only; float16
and bfloat16 are skipped with the reason (:func:`dtype_reason`). It needs NumPy < 1.24, so it lives in its own virtual
environment; the runner finds that interpreter in the suite's ``interpreters``, in
``CONVBENCH_PYTHON_MXNET``, or at ``.venv-mxnet/bin/python`` (see README, "Backends").
Threads: ``MXSetNumOMPThreads`` (MXNet sets OpenMP's thread count for the whole process).
"""

from __future__ import annotations

import ctypes
from typing import Any

from convbench.backend import Backend, BackendInfo, Prepared, UnsupportedCase
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph
from convbench_mxnet.threads import record_threads

INSTALL_HINT = "make mxnet-venv (scripts/setup-mxnet.sh: Python 3.11, mxnet==1.9.1, numpy==1.23.5)"
EXECUTIONS = {"eager": "eager", "hybridized": "hybridized", "compiled": "hybridized"}
EXECUTION_DESCRIPTIONS = {"hybridized": "Gluon hybridize(static_alloc, static_shape), the same as its compiled"}
DTYPES = ("float32",)
FLOAT16_CPU_REASON = (
    "mxnet: no float16 on CPU: MXNet 1.9's CPU Convolution has no float16 kernel ('FP16 gemm on cpu not "
    "implemented!') and its FullyConnected takes float16 only through cuDNN; this build's oneDNN takes no float16"
)
BFLOAT16_REASON = (
    "mxnet: no bfloat16: MXNet 1.9's NDArray API has no bfloat16 array type (NumPy has none); its bfloat16 "
    "exists only inside oneDNN graphs converted by AMP on CPUs with AVX512-BF16"
)
FLOAT16_CUDA_REASON = "mxnet: float16 on CUDA is not implemented in this backend (only float32)"


def dtype_reason(device: str, dtype: str) -> str | None:
    """Why MXNet cannot run ``dtype`` on ``device`` in this backend, or None."""
    if dtype == "bfloat16":
        return BFLOAT16_REASON
    if dtype == "float16":
        return FLOAT16_CPU_REASON if device == "cpu" else FLOAT16_CUDA_REASON
    return None if dtype in DTYPES else f"mxnet: only {', '.join(DTYPES)} is implemented in this backend (asked {dtype})"


class MxnetBackend(Backend):
    """MXNet 1.9.1 Gluon: imperative or hybridized; CPU, or CUDA with a CUDA build."""

    name = "mxnet"
    install_hint = INSTALL_HINT
    requires = ("mxnet",)  # fails with AttributeError np.bool under NumPy >= 1.24
    executions = EXECUTIONS
    execution_descriptions = EXECUTION_DESCRIPTIONS
    venv = ".venv-mxnet"  # make mxnet-venv (scripts/setup-mxnet.sh)

    def __init__(self) -> None:
        self._info: BackendInfo | None = None

    def probe(self) -> BackendInfo:
        import mxnet as mx
        import numpy as np

        try:
            gpus = mx.context.num_gpus()
            features = mx.runtime.Features()
            env: dict[str, Any] = {
                "mxnet": mx.__version__,
                "numpy": np.__version__,
                "gpus": gpus,
                "features": sorted(name for name in ("MKLDNN", "OPENMP", "BLAS_OPEN", "BLAS_MKL", "CUDA", "CUDNN") if features.is_enabled(name)),
            }
        except Exception as exc:
            return BackendInfo(self.name, False, version=mx.__version__, reason=f"mxnet failed to report devices: {exc}")
        return BackendInfo(self.name, True, version=mx.__version__, devices=["cpu"] + (["cuda"] if gpus else []), environment=env)

    def set_threads(self, threads: int | None) -> None:
        if threads is None:
            return
        if threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        import mxnet as mx

        mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(int(threads)))
        record_threads(threads)

    def skip_reason(self, case: Case) -> str | None:
        reason = super().skip_reason(case)
        if reason is not None:
            return reason
        if case.variant == "kernel":
            return "mxnet: no hand-written kernel variant is implemented in this backend"
        return dtype_reason(case.device, case.dtype)

    def prepare(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> Prepared:
        reason = self.skip_reason(case)
        if reason is not None:
            raise UnsupportedCase(reason)
        from convbench_mxnet.prepared import MxnetPrepared

        return MxnetPrepared(case, graph, tensors, cotangents)
