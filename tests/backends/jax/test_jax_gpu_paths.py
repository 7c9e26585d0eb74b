"""JAX's GPU settings, on a CPU with fakes: preallocation off, peak memory only when a case
set it. None of it has run on a GPU."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("jax")

from convbench_jax import prepared as jp  # noqa: E402
from convbench_jax.backend import JaxBackend  # noqa: E402


class FakeDevice:
    def __init__(self, peak: int) -> None:
        self.peak = peak

    def memory_stats(self) -> dict[str, int]:
        return {"peak_bytes_in_use": self.peak}


def test_preallocation_is_off_and_recorded() -> None:
    backend = JaxBackend()  # set where the backend is hosted, not when its plugin is imported
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert backend.info().environment["xla_python_client_preallocate"] == "false"


def test_peak_memory_only_when_the_case_raised_the_process_wide_peak() -> None:
    device = FakeDevice(1000)
    case = object.__new__(jp.JaxPrepared)
    case.device, case._details = device, {}
    case._peak_before = jp._peak_in_use(device)
    assert case.peak_memory_bytes() is None and "earlier case" in case._details["peak_memory"]
    device.peak = 5000
    assert case.peak_memory_bytes() == 5000
    assert jp._peak_in_use(object()) is None
