"""The ``executorch`` backend plugin: availability, environment, skip rules and ``prepare``.

A case's graph is lowered to a ``torch.fx.GraphModule`` by the torch backend's lowering
(:func:`convbench_torch.lower.lower`, the case's seeded weights as parameters), exported
by ``torch.export.export``, lowered to the Edge dialect and to an ExecuTorch program by
``executorch.exir.to_edge_transform_and_lower(...).to_executorch()`` and run from its
``.pte`` buffer by ``executorch.runtime.Runtime`` (:mod:`convbench_executorch.prepared`).

Executions (:data:`EXECUTIONS`): ``xnnpack`` (the ``XnnpackPartitioner`` delegates the
subgraphs XNNPACK takes; ExecuTorch's portable kernels run the rest) and ``portable``
(no partitioner: every op a portable kernel). ``compiled`` is ``xnnpack``.

Inference only, on the CPU: training is skipped with the reason. float32 and float16
(the module lowered in float16); bfloat16 is skipped.

It lives in its own virtual environment (:attr:`ExecutorchBackend.venv`,
``.venv-executorch``, made by ``make executorch-venv``: executorch pins its torch and
pulls some 33 packages of its own); the runner hosts its workers there.
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

#: The version pinned in pyproject's ``executorch`` extra.
EXECUTORCH_PIN = "executorch==1.5.1"
INSTALL_HINT = (
    "make executorch-venv (scripts/setup-executorch.sh: .venv-executorch with torch 2.13.0, "
    "executorch 1.5.1 and convbench[torch,executorch]; the runner uses it for executorch)"
)
#: case execution -> the form it runs
EXECUTIONS = {"xnnpack": "xnnpack", "portable": "portable", "compiled": "xnnpack"}
EXECUTION_DESCRIPTIONS = {
    "xnnpack": "torch.export, to_edge_transform_and_lower with the XnnpackPartitioner (portable kernels for what it leaves), a .pte run by ExecuTorch's runtime; the same as its compiled",
    "portable": "torch.export, to_edge, a .pte of ExecuTorch's portable kernels only (no delegate), run by its runtime",
}
DTYPES = ("float32", "float16")
TRAINING_REASON = "executorch: an ExecuTorch program runs inference only (this backend exports no training graph); training is not in this backend"
BFLOAT16_REASON = "executorch: no bfloat16 in this backend: neither the XNNPACK delegate nor the portable kernels are checked here in bfloat16"


class ExecutorchBackend(InferenceOnlyBackend):
    """ExecuTorch: the torch lowering exported to a ``.pte``, XNNPACK or portable kernels, on the CPU."""

    name = "executorch"
    dtypes = DTYPES
    training_reason = TRAINING_REASON
    bfloat16_reason = BFLOAT16_REASON
    install_hint = INSTALL_HINT
    requires = ("torch", "executorch.exir", "executorch.runtime")
    executions = EXECUTIONS
    execution_descriptions = EXECUTION_DESCRIPTIONS
    venv = ".venv-executorch"
    conformance = Conformance(
        execution="xnnpack",
        cannot=(("mode", "training", "inference only"),),
        boundary_layout="the program takes NCHW tensors in both layouts (XNNPACK packs NHWC inside its delegate)",
        exempt=(
            "its check in this module verifies but does not fit the module's 1200 s limit per backend: run by hand "
            "(convbench check of the module's executorch suite, xnnpack, 2 loaded cores) every case but "
            "the split networks took 13 min 20 s, 784 s of it ExecuTorch's export and lowering (8-56 s "
            "per network case): 94 inference cases ok (worst 2.3e-6), 74 training and 4 nothing-to-rewrite "
            "cases skipped as declared; mobilenet_tiny_split alone lowers in 355 s (ok): about 19 min in all. "
            "tests/backends/executorch verifies every spine op, the standard graphs, diagonalwise and a network"
        ),
    )

    def __init__(self) -> None:
        self._info: BackendInfo | None = None
        self._threads: int | None = None

    def probe(self) -> BackendInfo:
        from importlib.metadata import version

        import torch

        from convbench_executorch.prepared import registered_backends

        executorch = version("executorch")
        env: dict[str, Any] = {
            "executorch": executorch,
            "torch": str(torch.__version__),
            "runtime": "executorch.runtime.Runtime (pybindings portable_lib)",
            "delegates": registered_backends(),
            "cpu_threads": len(available_cpus()),
        }
        return BackendInfo(self.name, True, version=executorch, devices=["cpu"], environment=env)

    def prepare(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> Prepared:
        reason = self.skip_reason(case)
        if reason is not None:
            raise UnsupportedCase(reason)
        from convbench_executorch.prepared import ExecutorchPrepared

        return ExecutorchPrepared(case, graph, tensors, EXECUTIONS[case.execution], self._threads or len(available_cpus()))
