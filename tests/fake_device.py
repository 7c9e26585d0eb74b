"""A fake asynchronous device, for tests of the timing, peaks and profile plumbing.

Registered in tests through CONVBENCH_EXTRA_BACKENDS (``asyncfake=fake_device:AsyncBackend``).
It computes like the reference backend (so cases verify), but its ``step()`` only
*queues* the step's device work, ``FAKE_WORK_SECONDS`` of sleeping on a worker thread
(``CONVBENCH_FAKE_WORK_MS`` milliseconds), and returns at once; ``sync()`` waits until
the queue is drained. A timer that reads the clock without waiting measures almost
nothing; a correct one measures the work.

It also implements the optional hooks: ``peak_work`` (samplers that report fixed
seconds, so peaks are exact), ``cache_flusher`` (counts its calls, reported in details)
and ``profile`` (synthetic rows tied to the graph's nodes).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Any

from convbench.backend import Prepared
from convbench.peaks import PeakWork
from convbench.reference_backend import ReferenceBackend

#: Fake peaks: FLOPs per second and bytes per second the fake device "has".
FAKE_FLOPS_PER_S = 1e12
FAKE_BYTES_PER_S = 1e11


def work_seconds() -> float:
    return float(os.environ.get("CONVBENCH_FAKE_WORK_MS", "20")) / 1000.0


class FakeStream:
    """A queue of work items run in order by one thread, like a device stream."""

    def __init__(self) -> None:
        self.tasks: queue.Queue[float] = queue.Queue()
        self.done = threading.Event()
        self.pending = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            seconds = self.tasks.get()
            time.sleep(seconds)
            with self.lock:
                self.pending -= 1

    def submit(self, seconds: float) -> None:
        with self.lock:
            self.pending += 1
        self.tasks.put(seconds)

    def synchronize(self) -> None:
        while True:
            with self.lock:
                if self.pending == 0:
                    return
            time.sleep(0.0005)


class AsyncPrepared(Prepared):
    """Wraps a reference case; ``step`` queues ``work_seconds()`` on the fake stream."""

    def __init__(self, inner: Prepared, stream: FakeStream, case: Any, graph: Any) -> None:
        self.inner, self.stream, self.case, self.graph = inner, stream, case, graph
        self.flushes = 0
        self.return_seconds = 0.0

    def check(self) -> dict[str, Any]:
        result = self.inner.check()
        start = time.perf_counter()
        self.step()
        self.return_seconds = time.perf_counter() - start  # how long step() took to return
        self.sync()
        return result

    def step(self) -> None:
        self.stream.submit(work_seconds())

    def sync(self) -> None:
        self.stream.synchronize()

    def cache_flusher(self) -> Any:
        def flush() -> None:
            self.flushes += 1

        return flush

    def details(self) -> dict[str, Any]:
        return {"step_return_seconds": self.return_seconds, "work_seconds": work_seconds()}

    def profile(self, steps: int) -> list[dict[str, Any]]:
        """One row per op node: its op as the framework name, 1 ms per conv, 0.5 ms else."""
        rows = []
        for node in self.graph.ops:
            t = 1e-3 if node.op == "conv2d" else 5e-4
            rows.append({"node": node.name, "op": f"fake::{node.op}", "phase": "forward", "self_time": t, "count": 1.0, "source": "fake profiler"})
        rows.append({"node": None, "op": "fake::loss", "phase": "other", "self_time": 2e-4, "count": 1.0, "source": "fake profiler"})
        return rows

    def close(self) -> None:
        self.sync()
        self.inner.close()


class AsyncBackend(ReferenceBackend):
    """The reference computation on a fake asynchronous device (see the module docstring)."""

    name = "asyncfake"

    def __init__(self) -> None:
        super().__init__()
        self.stream = FakeStream()
        self.configured: dict[str, Any] = {}

    def configure(self, timing: Any) -> None:
        self.configured = timing.model_dump()

    def peak_work(self, device: str, dtype: str) -> PeakWork:
        flops, nbytes = 2e9, 4e8
        return PeakWork(
            matmul=lambda n: n * flops / FAKE_FLOPS_PER_S,
            matmul_flops=flops,
            copy=lambda n: n * nbytes / FAKE_BYTES_PER_S,
            copy_bytes=nbytes,
            description={"matmul": "fake", "copy": "fake"},
        )

    def prepare(self, case, graph, tensors, cotangents):  # noqa: ANN001,ANN201
        return AsyncPrepared(super().prepare(case, graph, tensors, cotangents), self.stream, case, graph)
