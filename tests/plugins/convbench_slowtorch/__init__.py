"""A test-only backend plugin: the torch backend whose step burns more of its own time.

Registered in place of ``torch`` through ``CONVBENCH_EXTRA_BACKENDS`` (see
:func:`slow_environment`): every timed step runs torch's step, then spins until
``1 + CONVBENCH_SLOWDOWN`` (default 0.10) times the step's own duration has passed. It is
the planted regression of benchmarks/trust.py and of the ``ab`` end-to-end test. CPU only:
the step is timed by the host clock, with the device synchronized.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

from convbench_torch import TorchBackend

from convbench.backend import Prepared

SLOWDOWN_ENV = "CONVBENCH_SLOWDOWN"
#: With this set to S, the worker process dies (exit 1) at the first step S seconds after
#: its first step: a side whose worker dies mid-run.
CRASH_ENV = "CONVBENCH_CRASH_AFTER"
_FIRST_STEP: list[float] = []


class SlowPrepared(Prepared):
    """Delegates to a prepared torch case; its step takes ``1 + fraction`` times as long."""

    def __init__(self, inner: Prepared, fraction: float, crash_after: float | None = None) -> None:
        self.inner = inner
        self.fraction = fraction
        self.crash_after = crash_after

    def check(self) -> Any:
        return self.inner.check()

    def step(self) -> None:
        t0 = time.perf_counter()
        first = _FIRST_STEP or [t0]
        _FIRST_STEP[:] = first
        if self.crash_after is not None and t0 - first[0] >= self.crash_after:
            os._exit(1)
        self.inner.step()
        self.inner.sync()
        end = t0 + (time.perf_counter() - t0) * (1 + self.fraction)
        while time.perf_counter() < end:
            pass

    def sync(self) -> None:
        self.inner.sync()

    def device_sampler(self) -> None:
        return None  # the host clock times the slowed step

    def peak_memory_bytes(self) -> int | None:
        return self.inner.peak_memory_bytes()

    def details(self) -> dict[str, Any]:
        return {**self.inner.details(), "planted_slowdown": self.fraction}

    def close(self) -> None:
        self.inner.close()


class SlowTorchBackend(TorchBackend):
    """``torch``, every prepared case slowed by ``CONVBENCH_SLOWDOWN``."""

    def prepare(self, case, graph, tensors, cotangents) -> Prepared:  # noqa: ANN001
        fraction = float(os.environ.get(SLOWDOWN_ENV, "0.10"))
        crash = os.environ.get(CRASH_ENV)
        return SlowPrepared(
            super().prepare(case, graph, tensors, cotangents),
            fraction,
            float(crash) if crash else None,
        )


def slow_environment(
    folder: Path,
    python: str = sys.executable,
    fraction: float = 0.10,
    crash_after: float | None = None,
) -> Path:
    """A folder that ``convbench ab --new`` takes as a virtual environment: its
    ``bin/python`` runs ``python`` with this plugin registered as ``torch``."""
    plugins = Path(__file__).resolve().parent.parent
    bindir = Path(folder) / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "python"
    script.write_text(
        "#!/bin/sh\n"
        f"export PYTHONPATH='{plugins}'${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export CONVBENCH_EXTRA_BACKENDS=torch=convbench_slowtorch:SlowTorchBackend\n"
        f"export {SLOWDOWN_ENV}={fraction}\n"
        + (f"export {CRASH_ENV}={crash_after}\n" if crash_after else "")
        + f"exec '{python}' \"$@\"\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return Path(folder)
