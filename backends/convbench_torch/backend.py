"""The ``torch`` backend plugin: availability, environment, skip rules and ``prepare``."""

from __future__ import annotations

import sys
from typing import Any

from convbench.backend import Backend, BackendInfo, Prepared, UnsupportedCase
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph
from convbench.peaks import PeakWork
from convbench.timing import TimingConfig
from convbench_torch import probe

INSTALL_HINT = "pip install 'convbench[torch]'"


class TorchBackend(Backend):
    """PyTorch: eager or ``torch.compile``, CPU or CUDA, NCHW or channels_last."""

    name = "torch"
    install_hint = INSTALL_HINT
    requires = ("torch",)
    variants = frozenset({"kernel"})  # Triton kernels: convbench_torch.kernels
    executions = {"eager": "eager", "compiled": "compiled", "cudagraph": "cudagraph"}
    execution_descriptions = {
        "compiled": "torch.compile",
        "cudagraph": "on CUDA, the eager step captured once as a CUDA graph and replayed (no per-kernel launches)",
    }

    def __init__(self) -> None:
        self._info: BackendInfo | None = None
        self._options: dict[str, Any] = {}

    def configure(self, timing: TimingConfig) -> None:
        """autotune (cudnn.benchmark), cold_cache and rotate_inputs, for the next cases.

        The worker calls this at the start of every case group: it is also where
        ``torch._dynamo.reset()`` runs (if dynamo is loaded), once per group, so that the
        compiled cases of one interleaved group keep each other's code."""
        self._options = {k: getattr(timing, k) for k in ("autotune", "cold_cache", "rotate_inputs")}
        dynamo = sys.modules.get("torch._dynamo")
        if dynamo is not None:
            dynamo.reset()

    def peak_work(self, device: str, dtype: str) -> PeakWork | None:
        """torch.mm of two n x n matrices and a device-to-device Tensor.copy_."""
        from convbench_torch.device import peak_work

        return peak_work(device, dtype)

    def probe(self) -> BackendInfo:  # (``probe`` below is the module convbench_torch.probe)
        devices = ["cpu"] + (["cuda"] if probe.cuda_available() else [])
        return BackendInfo(name=self.name, available=True, version=probe.torch_version(), devices=devices, environment=probe.environment())

    def set_threads(self, threads: int | None) -> None:
        """``torch.set_num_threads``; None leaves torch's default."""
        if threads is None:
            return
        if threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        import torch

        torch.set_num_threads(int(threads))
        if self._info is not None:
            self._info.environment["num_threads"] = torch.get_num_threads()

    def skip_reason(self, case: Case) -> str | None:
        reason = super().skip_reason(case)
        if reason is not None:
            return reason
        if "kernel" in case.variant.split("+"):
            from convbench_torch.kernels import unavailable_reason

            reason = unavailable_reason(case.device)
            if reason is not None:
                return reason
            if case.execution == "compiled" and case.device == "cpu":
                return "kernel variant on cpu: Triton's interpreter cannot run under torch.compile"
        if case.execution == "cudagraph" and case.device != "cuda":
            return "cudagraph execution: CUDA graphs need a CUDA device"
        if case.dtype != "float32":
            reason = probe.dtype_reason(case.device, case.dtype)
            if reason is not None:
                return reason
        if case.execution == "compiled":
            reason = probe.compile_reason(case.device)
            if reason is not None:
                return reason
        return None

    def prepare(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> Prepared:
        reason = self.skip_reason(case)
        if reason is not None:
            raise UnsupportedCase(reason)
        from convbench_torch.prepared import TorchPrepared

        return TorchPrepared(case, graph, tensors, cotangents, self._options)
