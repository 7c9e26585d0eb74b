"""The ``reference`` backend: the float64 NumPy executor as a backend.

It needs no framework, so it smoke-tests the whole harness (suites, workers, timing,
results) anywhere. Whatever the case's dtype it computes in float64 and says so in
:meth:`ReferencePrepared.details`; layouts are logical only (it always computes NCHW).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convbench.backend import Backend, BackendInfo, Prepared, UnsupportedCase
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph
from convbench.reference import backward, batchnorm_stats, forward

#: Learning rate of the SGD update of a training step.
LEARNING_RATE = 0.01


class ReferencePrepared(Prepared):
    """One case on the reference executor, holding private copies of its data.

    ``check()`` returns exactly :func:`convbench.reference.run_reference` of the data
    given to :meth:`ReferenceBackend.prepare`. In training it then applies the step's SGD
    update (lr 0.01) and BN running-statistics update, as the :class:`Prepared` contract
    says, so later ``step()`` calls continue from the updated weights.
    """

    def __init__(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> None:
        self.case = case
        self.graph = graph
        self.training = case.mode == "training"
        self.tensors = {k: np.array(v, dtype=np.float64) for k, v in tensors.items()}
        self.cotangents = {k: np.array(v, dtype=np.float64) for k, v in cotangents.items()}

    def _run(self) -> dict[str, np.ndarray]:
        values = forward(self.graph, self.tensors, self.training)
        result = {name: values[name] for name in self.graph.outputs}
        if not self.training:
            return result
        grads = backward(self.graph, values, self.cotangents, training=True)
        sources = [n for n in self.graph.nodes if n.op in ("input", "param")]
        result.update({f"grad:{n.name}": grads[n.name] for n in sources})
        self._update(values, grads)
        return result

    def _update(self, values: Tensors, grads: Tensors) -> None:
        """SGD on the params (new arrays: returned gradients stay valid); BN running stats."""
        for node in self.graph.params:
            self.tensors[node.name] = self.tensors[node.name] - LEARNING_RATE * grads[node.name]
        for node in self.graph.of_op("batchnorm"):
            x, mean_name, var_name = node.inputs[0], node.inputs[3], node.inputs[4]
            if mean_name not in self.tensors or var_name not in self.tensors:
                continue
            momentum = float(node.attrs.get("momentum", 0.1))
            mean, var = batchnorm_stats(values[x])
            count = values[x].size // values[x].shape[1]
            unbiased = var * count / max(count - 1, 1)  # PyTorch keeps the unbiased variance
            self.tensors[mean_name] = (1 - momentum) * self.tensors[mean_name] + momentum * mean
            self.tensors[var_name] = (1 - momentum) * self.tensors[var_name] + momentum * unbiased

    def check(self) -> dict[str, np.ndarray]:
        return self._run()

    def step(self) -> None:
        self._run()

    def details(self) -> dict[str, Any]:
        return {
            "compute_dtype": "float64",
            "case_dtype": self.case.dtype,
            "layout_used": "nchw",
            "execution": "numpy eager",
            "learning_rate": LEARNING_RATE if self.training else None,
        }

    def close(self) -> None:
        self.tensors.clear()
        self.cotangents.clear()


class ReferenceBackend(Backend):
    """convbench's float64 NumPy executor, on the CPU."""

    name = "reference"
    install_hint = "part of convbench itself; needs only NumPy"

    def __init__(self) -> None:
        self._threads: int | None = None
        self._limiter: Any = None

    def info(self) -> BackendInfo:
        return BackendInfo(
            name=self.name,
            available=True,
            version=np.__version__,
            devices=["cpu"],
            environment={"numpy": np.__version__, "compute_dtype": "float64"},
        )

    def skip_reason(self, case: Case) -> str | None:
        if case.execution != "eager":
            return f"reference: no {case.execution!r} execution (NumPy runs eagerly)"
        return super().skip_reason(case)

    def set_threads(self, threads: int | None) -> None:
        """Limit BLAS threads where ``threadpoolctl`` is installed; otherwise a no-op."""
        self._threads = threads
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None
        if threads is not None:
            self._limiter = threadpool_limits(limits=threads, user_api="blas")

    def prepare(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> Prepared:
        if case.device != "cpu":
            raise UnsupportedCase(f"reference: runs on the CPU only, not {case.device!r}")
        return ReferencePrepared(case, graph, tensors, cotangents)
