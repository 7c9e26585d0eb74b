"""The ``tvm`` backend plugin: availability, environment, skip rules and ``prepare``.

A case's graph is lowered to ONNX by the onnxruntime backend's lowering (the model
``convbench export`` writes, with the case's seeded weights), imported by TVM's Relax
ONNX frontend (``tvm.relax.frontend.onnx.from_onnx``), compiled for the ``llvm`` target
of this machine (``-mcpu`` from LLVM's host CPU when it reports one; the target is in
``details()["target"]``) and run by the Relax VM (:mod:`convbench_tvm.prepared`).

Executions (:data:`EXECUTIONS`): ``default`` (``tvm.compile`` with the default Relax
pipeline: its DLight fallback schedules, no tuning) and ``tuned`` (MetaSchedule within a
per-case budget of :data:`TRIALS_ENV` trials, default :data:`DEFAULT_TRIALS`, run in a
child process so that a crash of the tuner is the case's error, not the worker's: the
llvm target's default schedule rules and postprocessors, a replay search and the random
cost model, assembled by :mod:`convbench_tvm.tune` from parts that never serialize TVM IR
(apache-tvm-ffi 0.1.15 segfaults doing so; the extra pins 0.1.14.post0); what it ran and left out is in
``details()["tuning"]``). ``compiled`` is ``default``.

Inference only, on the CPU: training is skipped with the reason. float32 and float16
(the ONNX model in float16, compiled by LLVM); bfloat16 is skipped.
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
from convbench.cpu_topology import available_cpus
from convbench.data import Tensors
from convbench.graph import Graph

#: The version pinned in pyproject's ``tvm`` extra.
TVM_PIN = "apache-tvm==0.27.0.post1"
INSTALL_HINT = "pip install 'convbench[tvm]' (apache-tvm 0.27; onnx for the model it imports)"
#: case execution -> the form it runs
EXECUTIONS = {"default": "default", "tuned": "tuned", "compiled": "default"}
EXECUTION_DESCRIPTIONS = {
    "default": "tvm.compile with the default Relax pipeline (DLight fallback schedules), no tuning; the same as its compiled",
    "tuned": "MetaSchedule tuning within a per-case trial budget (CONVBENCH_TVM_TRIALS, default 64: default llvm rules, replay search, random cost model), then compiled with its database",
}
#: Environment variable holding the per-case MetaSchedule trial budget of ``tuned``.
TRIALS_ENV = "CONVBENCH_TVM_TRIALS"
DEFAULT_TRIALS = 64
DTYPES = ("float32", "float16")
TRAINING_REASON = "tvm: this backend compiles inference graphs only (Relax's training API is not used); training is not in this backend"
BFLOAT16_REASON = "tvm: no bfloat16: the ONNX lowering it imports (opset 17) writes float32 and float16 models only"


def size_thread_pool() -> None:
    """Let TVM's thread pool hold every CPU this process may use, before TVM makes it.

    TVM sizes the pool once per process, from ``TVM_NUM_THREADS`` (else
    ``OMP_NUM_THREADS``), else half the hardware threads on x86 (it assumes hyper-
    threading): one thread on a 2-vCPU VM, and ``runtime.config_threadpool`` cannot
    raise it later, so a case asking for 2 threads ran on 1. ``TVM_NUM_THREADS`` set
    by the user is kept (:class:`~convbench_tvm.prepared.TvmPrepared` skips a case it
    cannot honour); ``OMP_NUM_THREADS`` (Ray, for one, sets it to 1) is overridden."""
    import os

    os.environ.setdefault("TVM_NUM_THREADS", str(len(available_cpus())))


def tuning_trials() -> int:
    """The per-case MetaSchedule budget of ``tuned`` (:data:`TRIALS_ENV`, else the default)."""
    import os

    text = os.environ.get(TRIALS_ENV, "").strip()
    if not text:
        return DEFAULT_TRIALS
    trials = int(text)
    if trials < 1:
        raise ValueError(f"{TRIALS_ENV} must be a positive number of trials, got {text!r}")
    return trials


class TvmBackend(InferenceOnlyBackend):
    """Apache TVM (Relax): ONNX import, llvm target of the host, Relax VM, on the CPU."""

    name = "tvm"
    dtypes = DTYPES
    training_reason = TRAINING_REASON
    bfloat16_reason = BFLOAT16_REASON
    install_hint = INSTALL_HINT
    requires = ("tvm", "onnx")
    executions = EXECUTIONS
    execution_descriptions = EXECUTION_DESCRIPTIONS
    conformance = Conformance(execution="default", cannot=(("mode", "training", "inference graphs only"),), boundary_layout="ONNX operators are NCHW: NHWC is a Transpose at each boundary of the same model")

    def __init__(self) -> None:
        self._info: BackendInfo | None = None
        self._threads: int | None = None

    def probe(self) -> BackendInfo:
        size_thread_pool()
        import onnx
        import tvm

        from convbench_tvm.target import host_target

        env: dict[str, Any] = {
            "tvm": tvm.__version__,
            "onnx": onnx.__version__,
            "target": str(host_target(len(available_cpus()))),
            "cpu_threads": len(available_cpus()),
            "tuning_trials": tuning_trials(),
        }
        return BackendInfo(self.name, True, version=tvm.__version__, devices=["cpu"], environment=env)


    def prepare(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> Prepared:
        reason = self.skip_reason(case)
        if reason is not None:
            raise UnsupportedCase(reason)
        size_thread_pool()
        from convbench_tvm.prepared import TvmPrepared

        trials = tuning_trials() if EXECUTIONS[case.execution] == "tuned" else 0
        return TvmPrepared(case, graph, tensors, EXECUTIONS[case.execution], self._threads or len(available_cpus()), trials)
