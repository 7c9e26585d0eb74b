"""The ``jax`` backend plugin: availability, environment, skip rules and ``prepare``.

Execution: ``eager`` (op by op) and ``compiled`` (``jax.jit``); devices: ``cpu`` and, when
jaxlib has a CUDA plugin and sees a GPU, ``cuda``. XLA sizes its CPU thread pool when the
backend starts, so a worker runs the thread count it started with; cases asking for
another count are skipped with the reason.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from convbench.backend import Backend, BackendInfo, Prepared, UnsupportedCase
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph

INSTALL_HINT = "pip install 'convbench[jax]' (on a CUDA machine: pip install 'jax[cuda12]')"
EXECUTIONS = ("eager", "compiled")
DTYPES = ("float32",)


@functools.cache
def import_error() -> str | None:
    """Why ``import jax`` fails here, or None."""
    try:
        import jax  # noqa: F401
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _gpus() -> list[Any]:
    import jax

    try:
        return list(jax.devices("gpu"))
    except Exception:  # no GPU platform in this jaxlib
        return []


class JaxBackend(Backend):
    """JAX (XLA): op by op or jax.jit; CPU, or CUDA with a CUDA jaxlib."""

    name = "jax"
    install_hint = INSTALL_HINT

    def __init__(self) -> None:
        self._info: BackendInfo | None = None
        self._threads: int | None = None

    def info(self) -> BackendInfo:
        if self._info is not None:
            return self._info
        error = import_error()
        if error is not None:
            return BackendInfo(self.name, False, reason=f"jax is not importable ({error}): {INSTALL_HINT}")
        import jax
        import jaxlib

        try:
            gpus = _gpus()
            env: dict[str, Any] = {
                "jax": jax.__version__,
                "jaxlib": jaxlib.__version__,
                "default_backend": jax.default_backend(),
                "gpus": [d.device_kind for d in gpus],
                "xla_flags": os.environ.get("XLA_FLAGS", ""),
                "cpu_threads": os.cpu_count(),
            }
            self._info = BackendInfo(self.name, True, version=jax.__version__, devices=["cpu"] + (["cuda"] if gpus else []), environment=env)
        except Exception as exc:
            return BackendInfo(self.name, False, version=jax.__version__, reason=f"jax failed to report devices: {exc}")
        return self._info

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
        if case.execution not in EXECUTIONS:
            return f"jax: execution {case.execution!r} is not one of {list(EXECUTIONS)}"
        if case.dtype not in DTYPES:
            return f"jax: only {', '.join(DTYPES)} is implemented in this backend (asked {case.dtype})"
        cores = os.cpu_count() or 1
        if case.device == "cpu" and case.threads is not None and case.threads != cores:
            return f"jax: XLA's CPU thread pool is sized at start to the machine's {cores} cores; {case.threads} threads cannot be set"
        return None

    def prepare(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> Prepared:
        reason = self.skip_reason(case)
        if reason is not None:
            raise UnsupportedCase(reason)
        import jax

        device = jax.devices("cpu")[0] if case.device == "cpu" else _gpus()[0]
        from convbench_jax.prepared import JaxPrepared

        return JaxPrepared(case, graph, tensors, cotangents, device)
