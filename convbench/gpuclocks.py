"""GPU clocks, temperature, power and throttling per case, from nvidia-smi (as NVBench
records them), so that a throttled sample is flagged instead of trusted.

:func:`read` runs ``nvidia-smi --query-gpu=... --format=csv,noheader,nounits`` for one
GPU (the program is ``$CONVBENCH_NVIDIA_SMI`` or ``nvidia-smi`` on PATH) and returns the
case columns ``gpu_sm_clock_mhz``, ``gpu_mem_clock_mhz``, ``gpu_temperature_c``,
``gpu_power_w``, ``gpu_throttled`` and ``gpu_throttle_reasons`` (None each where it does
not answer). ``gpu_throttled`` is true when the active clock-event (throttle) reasons
include a power cap, a thermal or hardware slowdown or a power brake; idle, application
clock settings, sync boost and display clocks do not count.

The worker reads this after timing each CUDA case (and, where ``CONVBENCH_GPU_TELEMETRY=
always``, every case: the CPU rehearsal does so against scripts/gpu/fake-nvidia-smi).
It has been tested only against that fake and a stubbed runner: the field names are
those nvidia-smi documents, but no real nvidia-smi has been read by this code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

FIELDS = ("clocks.sm", "clocks.mem", "temperature.gpu", "power.draw", "clocks_throttle_reasons.active")
COLUMNS = ("gpu_sm_clock_mhz", "gpu_mem_clock_mhz", "gpu_temperature_c", "gpu_power_w")
#: NVML clock-event reason bits that mean the clocks were held down by the GPU itself.
THROTTLE_BITS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}
TIMEOUT_S = 5.0

Runner = Callable[[list[str]], str]


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=True).stdout


def program() -> str | None:
    return os.environ.get("CONVBENCH_NVIDIA_SMI") or shutil.which("nvidia-smi")


def empty() -> dict[str, Any]:
    return {**dict.fromkeys(COLUMNS), "gpu_throttled": None, "gpu_throttle_reasons": None}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def parse(line: str) -> dict[str, Any]:
    """The columns from one csv line of the query (see :data:`FIELDS`)."""
    out = empty()
    parts = [p.strip() for p in line.strip().split(",")]
    if len(parts) != len(FIELDS):
        return out
    for col, text in zip(COLUMNS, parts[:4], strict=True):
        out[col] = _number(text)
    try:
        mask = int(parts[4], 16) if parts[4].lower().startswith("0x") else int(parts[4])
    except ValueError:
        return out
    reasons = [name for bit, name in THROTTLE_BITS.items() if mask & bit]
    out.update(gpu_throttled=bool(reasons), gpu_throttle_reasons=",".join(reasons) or None)
    return out


def read(index: int = 0, run: Runner | None = None) -> dict[str, Any]:
    """The telemetry columns of GPU ``index`` now; all None where nvidia-smi does not answer."""
    prog = program() if run is None else "nvidia-smi"
    if prog is None:
        return empty()
    try:
        text = (run or _run)([prog, f"--id={index}", f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits"])
    except (OSError, subprocess.SubprocessError):
        return empty()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return parse(lines[0]) if lines else empty()


def wanted(device: str) -> bool:
    """Whether a case on ``device`` gets the telemetry columns."""
    return device == "cuda" or os.environ.get("CONVBENCH_GPU_TELEMETRY", "") == "always"
