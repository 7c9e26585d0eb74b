"""One case as an ExecuTorch program: the torch lowering exported, lowered, loaded once.

The timed step is ``Method.execute(inputs)`` on the loaded ``forward`` method; outputs
are converted only by :meth:`ExecutorchPrepared.check`. The program takes NCHW
contiguous tensors in both layouts (XNNPACK packs NHWC itself inside its delegate).
Threads: ``xnnpack`` resizes the runtime's threadpool (``_unsafe_reset_threadpool``)
before it loads the method, and only when the count changes: the XNNPACK delegate keeps
the pthreadpool it finds at load, so a reset after load left it a destroyed pool (with
threads=1 the timed ``execute`` aborted in glibc's mutex assertion or segfaulted). A
reset reloads every other live program's method for the same reason. The portable
kernels are single-threaded.

This module imports torch and executorch; :mod:`convbench_executorch.backend` imports it lazily.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import numpy as np
import torch
from convbench_torch.lower import DTYPES, lower, to_torch

from convbench.backend import Prepared, UnsupportedCase
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph


def registered_backends() -> list[str]:
    """The delegates this runtime was built with (e.g. XnnpackBackend)."""
    from executorch.extension.pybindings import portable_lib

    return sorted(portable_lib._get_registered_backend_names())


_LIVE: weakref.WeakSet[ExecutorchPrepared] = weakref.WeakSet()


def set_pool_threads(threads: int) -> int:
    """Resize the runtime's threadpool to ``threads`` unless it has that many; return its count.

    After a resize, every live program's method is loaded again, so that no XNNPACK
    delegate keeps the destroyed pool."""
    from executorch.extension.pybindings import portable_lib

    if int(portable_lib._threadpool_get_thread_count()) != threads:
        portable_lib._unsafe_reset_threadpool(threads)
        for other in list(_LIVE):
            other.reload()
    return int(portable_lib._threadpool_get_thread_count())


class ExecutorchPrepared(Prepared):
    """The case's graph as a ``.pte`` program in ExecuTorch's runtime."""

    def __init__(self, case: Case, graph: Graph, tensors: Tensors, execution: str, threads: int) -> None:
        from executorch.exir import to_edge_transform_and_lower
        from executorch.runtime import Runtime

        self.case = case
        dtype = DTYPES[case.dtype]
        cpu = torch.device("cpu")
        lowered = lower(graph, tensors, training=False, dtype=dtype, device=cpu, channels_last=False)
        module = lowered.module.eval()
        self.output_names = lowered.output_names
        self.inputs = [to_torch(tensors[name], dtype, cpu, False) for name in lowered.input_names]
        start = time.perf_counter()
        try:
            with torch.no_grad():
                exported = torch.export.export(module, tuple(self.inputs))
            partitioner = []
            if execution == "xnnpack":
                from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
                    XnnpackPartitioner,
                )

                partitioner = [XnnpackPartitioner()]
            program = to_edge_transform_and_lower(exported, partitioner=partitioner).to_executorch()
            self.buffer = program.buffer
            pool_threads = set_pool_threads(int(threads)) if execution == "xnnpack" else 1
            self.method = Runtime.get().load_program(self.buffer).load_method("forward")
        except Exception as exc:
            raise UnsupportedCase(f"executorch: lowering refused the model: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__}") from exc
        seconds = time.perf_counter() - start
        self._details: dict[str, Any] = {
            "torch": str(torch.__version__),
            "lowering": "convbench_torch.lower -> torch.export.export -> to_edge_transform_and_lower -> to_executorch",
            "partitioner": "XnnpackPartitioner" if execution == "xnnpack" else "none (portable kernels)",
            "lower_seconds": round(seconds, 3),
            "pte_bytes": len(self.buffer),
            "layout_requested": case.layout,
            "layout_used": "nchw",
        }
        if case.layout != "nchw":
            self._details["layout_note"] = "the program takes NCHW contiguous tensors; XNNPACK packs NHWC inside its delegate"
        _LIVE.add(self)
        if execution == "xnnpack":
            self._details["num_threads"] = pool_threads
        else:
            self._details["num_threads"] = 1
            self._details["threads_note"] = "ExecuTorch's portable kernels are single-threaded"

    def reload(self) -> None:
        """Load the method again from the ``.pte`` buffer (after the threadpool was resized)."""
        from executorch.runtime import Runtime

        if self.method is not None:
            self.method = Runtime.get().load_program(self.buffer).load_method("forward")

    def step(self) -> None:
        self.method.execute(self.inputs)

    def check(self) -> dict[str, np.ndarray]:
        outs = self.method.execute(self.inputs)
        return {name: np.asarray(out.to(torch.float64).numpy(), dtype=np.float64) for name, out in zip(self.output_names, outs, strict=True)}

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def close(self) -> None:
        self.method = None  # type: ignore[assignment]
        _LIVE.discard(self)
