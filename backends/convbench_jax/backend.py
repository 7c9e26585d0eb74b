"""The ``jax`` backend plugin: availability, environment, skip rules and ``prepare``.

Execution: ``eager`` (op by op) and ``jit`` (``jax.jit``; ``compiled`` is its alias).
Dtypes: float32, float16 and bfloat16 (batch norm computes in float32); devices: ``cpu`` and, when
a CUDA plugin of jaxlib is installed, ``cuda``. Threads: XLA fixes its CPU threading when
its runtime starts, which this plugin delays until the first case: one thread is
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``, the
machine's core count is XLA's default; other counts, or a count other than the one the
runtime started with, are skipped with the reason.
"""

from __future__ import annotations

import os
from typing import Any

from convbench.backend import Backend, BackendInfo, Conformance, Prepared, UnsupportedCase
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph

INSTALL_HINT = "pip install 'convbench[jax]' (on a CUDA machine: pip install 'jax[cuda12]')"
EXECUTIONS = {"eager": "eager", "jit": "jit", "compiled": "jit"}
EXECUTION_DESCRIPTIONS = {"jit": "jax.jit of the whole step, the same as its compiled"}
DTYPES = ("float32", "float16", "bfloat16")


SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _gpus() -> list[Any]:
    """The GPUs of JAX's runtime (starts the runtime)."""
    import jax

    try:
        return list(jax.devices("gpu"))
    except Exception:  # no GPU platform in this jaxlib
        return []


def _cuda_plugin() -> str | None:
    """The installed CUDA plugin of jaxlib, if any (found without starting the runtime)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in ("jax-cuda13-plugin", "jax-cuda12-plugin"):
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            continue
    return None


class JaxBackend(Backend):
    """JAX (XLA): op by op or jax.jit; CPU, or CUDA with a CUDA jaxlib."""

    name = "jax"
    install_hint = INSTALL_HINT
    requires = ("jax", "jaxlib")
    executions = EXECUTIONS
    execution_descriptions = EXECUTION_DESCRIPTIONS
    #: Op by op, JAX compiles every primitive for every shape and retraces the gradient each
    #: step (3-4x slower than one jax.jit per case): its eager path is checked by
    #: tests/backends/jax.
    conformance = Conformance(execution="compiled")

    def __init__(self) -> None:
        self._info: BackendInfo | None = None
        self._threads: int | None = None  #: what the current case asks for
        self._runtime_threads: int | None = None  #: what the runtime started with (once started)
        # XLA's GPU client preallocates 75% of the device's memory at start unless told not
        # to: off (set here, in the process that hosts the backend, before jax creates its
        # client), unless the environment already says otherwise; recorded in the environment.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

    def probe(self) -> BackendInfo:
        import jax
        import jaxlib

        plugin = _cuda_plugin()
        env: dict[str, Any] = {
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "cuda_plugin": plugin,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "xla_python_client_preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
            "cpu_cores": os.cpu_count(),
        }
        return BackendInfo(self.name, True, version=jax.__version__, devices=["cpu"] + (["cuda"] if plugin else []), environment=env)

    def _start_runtime(self) -> None:
        """Start XLA's runtime with the threads of the first case (see module docstring)."""
        if self._runtime_threads is not None:
            return
        cores = os.cpu_count() or 1
        threads = self._threads or cores
        if threads == 1 and cores > 1:
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREAD_FLAGS}".strip()
        import jax

        jax.devices()
        self._runtime_threads = threads

    def set_threads(self, threads: int | None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        self._threads = threads

    def skip_reason(self, case: Case) -> str | None:
        reason = super().skip_reason(case)
        if reason is not None:
            return reason
        if case.variant == "kernel":
            return "jax: no hand-written kernel variant is implemented in this backend"
        if case.dtype not in DTYPES:
            return f"jax: only {', '.join(DTYPES)} is implemented in this backend (asked {case.dtype})"
        cores = os.cpu_count() or 1
        threads = case.threads or cores
        if case.device == "cpu" and threads not in (1, cores):
            return f"jax: XLA's CPU threads can be 1 or the machine's {cores} cores, not {threads}"
        if case.device == "cpu" and self._runtime_threads not in (None, threads):
            return f"jax: this worker's XLA runtime started with {self._runtime_threads} CPU thread(s), fixed at start; {threads} need their own run"
        return None

    def prepare(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> Prepared:
        reason = self.skip_reason(case)
        if reason is not None:
            raise UnsupportedCase(reason)
        self._start_runtime()
        import jax

        if case.device == "cpu":
            device = jax.devices("cpu")[0]
        else:
            gpus = _gpus()
            if not gpus:
                raise UnsupportedCase(f"jax: {_cuda_plugin()} is installed but JAX sees no GPU")
            device = gpus[0]
        from convbench_jax.prepared import JaxPrepared

        prepared = JaxPrepared(case, graph, tensors, cotangents, device)
        prepared.note_threads(self._runtime_threads, os.environ.get("XLA_FLAGS", ""))
        return prepared
