"""A backend for the fleet tests: the reference backend, plus two behaviours keyed by
the workload id and the node's environment (each Ray node of the test has its own):

* ``gate*``: waits (up to 60 s) until the file named by CONVBENCH_TEST_GATE exists;
* ``hang*``: where CONVBENCH_TEST_HANG names a file, writes this worker's pid there,
  then sleeps far past any timeout (so the test can kill the node mid-case).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from convbench.reference_backend import ReferenceBackend


class FleetBackend(ReferenceBackend):
    name = "fleetfake"

    def prepare(self, case, graph, tensors, cotangents):  # noqa: ANN001,ANN201
        gate = os.environ.get("CONVBENCH_TEST_GATE")
        if case.workload.startswith("gate") and gate:
            deadline = time.monotonic() + 60
            while not Path(gate).exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        hang = os.environ.get("CONVBENCH_TEST_HANG")
        if case.workload.startswith("hang") and hang:
            Path(hang + ".tmp").write_text(str(os.getpid()))
            os.replace(hang + ".tmp", hang)
            time.sleep(3600)
        return super().prepare(case, graph, tensors, cotangents)
