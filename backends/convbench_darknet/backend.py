"""The ``darknet`` backend plugin: availability, skip rules and ``prepare``.

The IR is lowered to a darknet ``.cfg`` and weights file (:mod:`convbench_darknet.lower`)
and run by libdarknet through ctypes (:mod:`convbench_darknet.abi`,
:mod:`convbench_darknet.prepared`). Debian's build (source of September 2018) is CPU-only
and single-threaded (no OpenMP, no GPU): device ``cpu``, one thread, float32, NCHW.
Inference and training (darknet's own forward, backward and SGD update) in execution
``eager``; a case asked for more threads runs on one and says so in ``details()``. What darknet cannot express (ReLU6, channel shuffle, slices, shifts, pads,
dilation, non-square windows) is a skipped row naming it.
"""

from __future__ import annotations

import functools
import subprocess
from typing import Any

from convbench.backend import Backend, BackendInfo, Conformance, Prepared, UnsupportedCase
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph
from convbench_darknet.abi import INSTALL_HINT


@functools.cache
def package_version() -> str | None:
    """The Debian package's version (libdarknet has no version call), or None."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "darknet"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class DarknetBackend(Backend):
    """darknet (pjreddie, 2018) on the CPU, driven through ctypes."""

    name = "darknet"
    install_hint = INSTALL_HINT
    conformance = Conformance(
        exempt="darknet cannot express much of the IR (ReLU6, channel shuffle, slices, shifts, pads, dilation, NHWC): "
        "tests/test_darknet_backend.py checks what it can"
    )

    def __init__(self) -> None:
        self._info: BackendInfo | None = None

    def info(self) -> BackendInfo:
        if self._info is not None:
            return self._info
        from convbench_darknet.abi import DarknetMissing, load

        try:
            dn = load()
        except DarknetMissing as exc:
            return BackendInfo(self.name, False, reason=f"darknet: {exc}")
        except Exception as exc:  # a header the struct reader cannot follow
            return self.unavailable(f"darknet: libdarknet unusable ({type(exc).__name__}: {exc})")
        version = package_version() or "unknown"
        env: dict[str, Any] = {"darknet": version, "library": str(dn.path), "header": str(dn.header), "gpu": False, "openmp": False}
        self._info = BackendInfo(self.name, True, version=version, devices=["cpu"], environment=env)
        return self._info

    def skip_reason(self, case: Case) -> str | None:
        reason = super().skip_reason(case)
        if reason is not None:
            return reason
        if case.variant == "kernel":
            return "darknet: no hand-written kernel variant is implemented in this backend"
        if case.dtype != "float32":
            return f"darknet: computes in float32 only (asked {case.dtype})"
        if case.layout != "nchw":
            return f"darknet: computes in NCHW only (asked {case.layout})"
        return None

    def set_threads(self, threads: int | None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")

    def prepare(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> Prepared:
        reason = self.skip_reason(case)
        if reason is not None:
            raise UnsupportedCase(reason)
        from convbench_darknet.prepared import DarknetPrepared

        return DarknetPrepared(case, graph, tensors, cotangents)
