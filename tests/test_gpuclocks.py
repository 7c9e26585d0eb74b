"""GPU telemetry from nvidia-smi (convbench.gpuclocks), against stubs: no real nvidia-smi."""

from __future__ import annotations

import subprocess
from pathlib import Path

from convbench import gpuclocks

FAKE = Path(__file__).resolve().parents[1] / "scripts" / "gpu" / "fake-nvidia-smi"


def test_parse_flags_power_and_thermal_throttling_not_idle() -> None:
    row = gpuclocks.read(0, run=lambda cmd: "1755, 2619, 83, 699.1, 0x0000000000000024\n")
    assert row["gpu_sm_clock_mhz"] == 1755 and row["gpu_temperature_c"] == 83
    assert row["gpu_throttled"] is True and row["gpu_throttle_reasons"] == "sw_power_cap,sw_thermal_slowdown"
    idle = gpuclocks.parse("210, 405, 30, [N/A], 0x0000000000000001")
    assert idle["gpu_throttled"] is False and idle["gpu_power_w"] is None


def test_no_answer_gives_nones(monkeypatch) -> None:  # noqa: ANN001
    def fail(cmd: list[str]) -> str:
        raise subprocess.CalledProcessError(9, cmd)

    assert gpuclocks.read(0, run=fail) == gpuclocks.empty()
    monkeypatch.setenv("CONVBENCH_NVIDIA_SMI", "/nonexistent/nvidia-smi")
    assert gpuclocks.read(0) == gpuclocks.empty()
    monkeypatch.setenv("CONVBENCH_NVIDIA_SMI", str(FAKE))
    assert gpuclocks.read(0)["gpu_sm_clock_mhz"] == 1980 and gpuclocks.read(0)["gpu_throttled"] is False
