"""Backends that misbehave on purpose, for the runner's fault tests.

Registered in tests through CONVBENCH_EXTRA_BACKENDS. They compute like the reference
backend, except on workloads whose id asks otherwise:

* ``crash*``: the worker process dies (exit code 7) while preparing the case;
* ``hang*``: the worker sleeps far past any timeout;
* ``wrong*``: the results are perturbed by 1%, so verification must fail;
* ``kink*`` (training): the gradients are the reference's with the derivative at the
  element nearest a relu kink taken on the other side, as a float32 backend's rounding
  may put it (:mod:`convbench.kinks`).

:class:`WarpBackend` is well behaved: it declares an execution, a backend-implemented
variant and a venv of its own.
"""

from __future__ import annotations

import os
import time

import numpy as np

from convbench.kinks import find_ties
from convbench.reference import backward, forward
from convbench.reference_backend import ReferenceBackend
from convbench.variants import VariantKind, is_depthwise


class FaultyBackend(ReferenceBackend):
    name = "faulty"

    def prepare(self, case, graph, tensors, cotangents):  # noqa: ANN001,ANN201
        if case.workload.startswith("crash"):
            os._exit(7)
        if case.workload.startswith("hang"):
            time.sleep(3600)
        prepared = super().prepare(case, graph, tensors, cotangents)
        check = prepared.check
        if case.workload.startswith("kink") and case.mode == "training":
            values = forward(graph, tensors, training=True)
            tie = find_ties(graph, values, rtol=1e-5)[0]
            grads = backward(graph, values, cotangents, training=True, flipped={tie.node: np.array([tie.flat])})
            flipped = {f"grad:{n.name}": grads[n.name] for n in graph.nodes if n.op in ("input", "param")}

            def across_the_kink() -> dict[str, np.ndarray]:
                return {**check(), **flipped}

            prepared.check = across_the_kink  # type: ignore[method-assign]
        if case.workload.startswith("wrong"):

            def perturbed() -> dict[str, np.ndarray]:
                return {k: v * 1.01 for k, v in check().items()}

            prepared.check = perturbed  # type: ignore[method-assign]
        return prepared


class WarpBackend(ReferenceBackend):
    """A plugin declaring an execution (``warp``, the reference's computation), a
    backend-implemented variant and a virtual environment of its own, for the registry's
    tests (``tests.fake_backends:WarpBackend``)."""

    name = "warpfake"
    executions = {"eager": "eager", "warp": "warp", "compiled": "warp"}
    execution_descriptions = {"warp": "the reference executor, at warp speed"}
    venv = ".venv-warpfake"
    variant_kinds = (VariantKind("warpkernel", lambda g, _: g, {}, "depthwise convs in its warp kernel (backend-implemented)", is_depthwise),)
    variants = frozenset({"warpkernel"})
