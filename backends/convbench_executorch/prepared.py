"""One case as an ExecuTorch program: the torch lowering exported, lowered, loaded once.

The timed step is ``Method.execute(inputs)`` on the loaded ``forward`` method; outputs
are converted only by :meth:`ExecutorchPrepared.check`. The program takes NCHW
contiguous tensors in both layouts (XNNPACK packs NHWC itself inside its delegate).
Threads: ``xnnpack`` resizes the runtime's threadpool (``_unsafe_reset_threadpool``);
the portable kernels are single-threaded.

This module imports torch and executorch; :mod:`convbench_executorch.backend` imports it lazily.
"""

from __future__ import annotations

import time
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


class ExecutorchPrepared(Prepared):
    """The case's graph as a ``.pte`` program in ExecuTorch's runtime."""

    def __init__(self, case: Case, graph: Graph, tensors: Tensors, execution: str, threads: int) -> None:
        from executorch.exir import to_edge_transform_and_lower
        from executorch.extension.pybindings import portable_lib
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
        if execution == "xnnpack":
            portable_lib._unsafe_reset_threadpool(int(threads))
            self._details["num_threads"] = int(portable_lib._threadpool_get_thread_count())
        else:
            self._details["num_threads"] = 1
            self._details["threads_note"] = "ExecuTorch's portable kernels are single-threaded"

    def step(self) -> None:
        self.method.execute(self.inputs)

    def check(self) -> dict[str, np.ndarray]:
        outs = self.method.execute(self.inputs)
        return {name: np.asarray(out.to(torch.float64).numpy(), dtype=np.float64) for name, out in zip(self.output_names, outs, strict=True)}

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def close(self) -> None:
        self.method = None  # type: ignore[assignment]
