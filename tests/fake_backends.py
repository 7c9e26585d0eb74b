"""Backends that misbehave on purpose, for the runner's fault tests.

Registered in tests through CONVBENCH_EXTRA_BACKENDS. They compute like the reference
backend, except on workloads whose id asks otherwise:

* ``crash*``: the worker process dies (exit code 7) while preparing the case;
* ``hang*``: the worker sleeps far past any timeout;
* ``wrong*``: the results are perturbed by 1%, so verification must fail.

:class:`WarpBackend` is well behaved: it declares an execution, a backend-implemented
variant and a venv of its own.
"""

from __future__ import annotations

import os
import time

import numpy as np

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
        if case.workload.startswith("wrong"):
            check = prepared.check

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
