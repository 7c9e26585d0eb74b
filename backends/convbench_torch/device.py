"""Device-side helpers of the torch backend: peak work, cache flushing, event timing.

* :func:`peak_work`: the matmul and the device-to-device copy that
  :mod:`convbench.peaks` times to measure a device's peaks (FLOP/s and bytes/s);
* :func:`flush_buffer` / :func:`flush`: a buffer at least twice the last-level cache
  (a GPU's L2, a CPU's L3) and the write that evicts the cache (cold-cache timing);
* :func:`event_sampler`: times ``n`` calls with CUDA events on the current stream.

This module imports torch; :mod:`convbench_torch.backend` imports it lazily.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from convbench.peaks import PeakWork
from convbench.timing import Sampler, host_sampler
from convbench_torch import probe
from convbench_torch.lower import DTYPES

MIB = 1 << 20
#: Largest side of the square matrices of the FLOP/s measurement, per device type; the
#: side doubles from 256 until one product takes MATMUL_SECONDS (a CPU without float16
#: kernels multiplies at well under 1 GFLOP/s).
MATMUL_N = {"cuda": 8192, "cpu": 2048}
MATMUL_SECONDS = 0.05
#: Size of each buffer of the bytes/s measurement (well past any last-level cache).
COPY_BYTES = {"cuda": 1024 * MIB, "cpu": 128 * MIB}
#: The smallest cache-flush buffer, when the cache size cannot be read.
MIN_FLUSH_BYTES = 64 * MIB


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def event_sampler(fn: Callable[[], object], device: torch.device) -> Sampler:
    """Device seconds of ``n`` calls of ``fn``, from CUDA events around them."""

    def sample(n: int) -> float:
        stream = torch.cuda.current_stream(device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record(stream)
        for _ in range(n):
            fn()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / 1000.0

    return sample


def _matmul_side(device: torch.device, dtype: torch.dtype) -> int:
    """The side n, a power of two from 256 to MATMUL_N, whose product lasts MATMUL_SECONDS."""
    n = 256
    while n < MATMUL_N[device.type]:
        a = torch.ones(n, n, device=device, dtype=dtype)
        torch.mm(a, a)  # the first call may pay for library set-up
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, a)
        synchronize(device)
        if time.perf_counter() - start >= MATMUL_SECONDS:
            break
        n *= 2
    return n


#: FP32 FMA lanes (CUDA cores) per SM, by compute capability major version (minor where
#: it differs); from NVIDIA's CUDA programming guide's arithmetic-throughput table.
FP32_LANES = {(6, 0): 64, (7, 0): 64, (7, 5): 64, (8, 0): 64, 8: 128, 9: 128, 10: 128, 12: 128}
#: Architectures whose CUDA cores run half-precision FMAs at twice the FP32 rate (half2).
HALF_DOUBLE_RATE = {(6, 0), (7, 0), (8, 0), (9, 0), (10, 0)}


def fma_peak(major: int, minor: int, sms: int, sm_clock_mhz: float, dtype_name: str) -> float | None:
    """Theoretical CUDA-core FMA peak in FLOP/s (2 per FMA), or None for an unknown GPU."""
    lanes = FP32_LANES.get((major, minor), FP32_LANES.get(major))
    if lanes is None or sms <= 0 or sm_clock_mhz <= 0:
        return None
    rate = 2 if dtype_name in ("float16", "bfloat16") and (major, minor) in HALF_DOUBLE_RATE else 1
    return 2.0 * sms * lanes * rate * sm_clock_mhz * 1e6


def _max_sm_clock_mhz(index: int) -> float:
    """The GPU's max SM clock from nvidia-smi (0 when it does not answer)."""
    import subprocess

    from convbench.gpuclocks import program

    prog = program()
    if prog is None:
        return 0.0
    try:
        out = subprocess.run([prog, f"--id={index}", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5, check=True).stdout  # fmt: skip
        return float(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return 0.0


def cuda_core_peaks(device: torch.device, dtype_name: str) -> dict[str, object]:
    """``fma_flops_per_s`` (theoretical), ``l2_bytes`` and how they were found (CUDA only).

    Not measured: a depthwise conv's FLOPs run on CUDA cores, not tensor cores, and this
    is their ceiling. Has not run on a GPU (tests stub the device properties)."""
    props = torch.cuda.get_device_properties(device)
    clock = _max_sm_clock_mhz(device.index or 0)
    peak = fma_peak(props.major, props.minor, props.multi_processor_count, clock, dtype_name)
    return {
        "fma_flops_per_s": peak,
        "fma": f"theoretical: {props.multi_processor_count} SMs x FP32 lanes of sm_{props.major}{props.minor} x 2 x "
        f"{clock:g} MHz max SM clock (nvidia-smi){' x 2 (half2)' if peak and dtype_name != 'float32' and (props.major, props.minor) in HALF_DOUBLE_RATE else ''}",
        "l2_bytes": int(getattr(props, "L2_cache_size", 0) or 0) or None,
    }


def peak_work(device_name: str, dtype_name: str) -> PeakWork:
    """An n x n matmul (2 n^3 FLOPs) and a copy of COPY_BYTES (2 x COPY_BYTES moved)."""
    device = torch.device(device_name)
    dtype = DTYPES[dtype_name]
    if device.type == "cuda" and dtype_name == "float32":
        probe.set_strict_fp32()  # the cases' float32 is IEEE float32: so is the peak
    n = _matmul_side(device, dtype)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    src = torch.ones(COPY_BYTES[device.type] // itemsize, device=device, dtype=dtype)
    dst = torch.empty_like(src)

    def matmul() -> None:
        torch.mm(a, b, out=c)

    def copy() -> None:
        dst.copy_(src)

    if device.type == "cuda":
        mm_sampler, cp_sampler, timer = event_sampler(matmul, device), event_sampler(copy, device), "device_events"
    else:
        sync = lambda: None  # noqa: E731
        mm_sampler, cp_sampler, timer = host_sampler(matmul, sync), host_sampler(copy, sync), "host_wall"

    def close() -> None:
        nonlocal a, b, c, src, dst
        del a, b, c, src, dst
        if device.type == "cuda":
            torch.cuda.empty_cache()

    return PeakWork(
        matmul=mm_sampler,
        matmul_flops=2.0 * n**3,
        copy=cp_sampler,
        copy_bytes=2.0 * src.numel() * itemsize,
        description={
            "matmul": f"torch.mm {n}x{n} @ {n}x{n} {dtype_name}",
            "copy": f"Tensor.copy_ of {src.numel() * itemsize // MIB} MiB {dtype_name}, device to device",
            "timer": timer,
            "torch": str(torch.__version__),
            "threads": torch.get_num_threads(),
            **(cuda_core_peaks(device, dtype_name) if device.type == "cuda" else {}),
        },
        close=close,
    )


def _cpu_llc_bytes() -> int:
    """Largest CPU cache size Linux reports (0 when unknown)."""
    sizes = []
    for name in ("SC_LEVEL3_CACHE_SIZE", "SC_LEVEL2_CACHE_SIZE"):
        with contextlib.suppress(ValueError, OSError):
            sizes.append(int(os.sysconf(name)))
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = f.read_text().strip().upper()
            scale = {"K": 1 << 10, "M": MIB}.get(text[-1:], 1)
            sizes.append(int(text.rstrip("KM")) * scale)
        except (OSError, ValueError):
            pass
    return max(sizes, default=0)


def cache_bytes(device: torch.device) -> int:
    """The device's last-level cache in bytes (0 when unknown)."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return int(getattr(props, "L2_cache_size", 0) or 0)
    return _cpu_llc_bytes()


def flush_buffer(device: torch.device) -> torch.Tensor:
    """A float32 buffer of max(2 x the last-level cache, MIN_FLUSH_BYTES) on ``device``."""
    nbytes = max(2 * cache_bytes(device), MIN_FLUSH_BYTES)
    return torch.zeros(nbytes // 4, dtype=torch.float32, device=device)


def flush(buffer: torch.Tensor) -> None:
    """Evict the cache by touching every line of ``buffer``: a read-modify-write on a
    CPU (large memsets may bypass the cache), a write on a GPU (as triton's do_bench)."""
    if buffer.device.type == "cuda":
        buffer.zero_()
    else:
        buffer.add_(1.0)
