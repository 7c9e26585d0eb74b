"""Device peaks and each case's roofline bound.

Peaks
    Measured once per run for each (backend, device, dtype) and, on a CPU, thread count,
    by timing with the core's timing protocol two pieces of work the backend runs through
    its framework (:meth:`convbench.backend.Backend.peak_work`): a large matrix product
    (FLOP/s: 2 n^3 per product) and a large device-to-device copy (bytes/s: the bytes read
    plus the bytes written). The peak is the best sample (shortest time), since a peak is
    an upper bound; the median is recorded beside it. They are stored in ``run.json``
    under ``environment.backends["BACKEND:DEVICE"].peaks[KEY]`` (:func:`peak_key`).

Roofline bound
    The least time the device could take for a case's work:
    ``max(flops / peak_flops, bytes / peak_bytes)`` seconds (``roofline_limit`` says which
    term wins: ``compute`` or ``memory``); ``roofline_fraction = bound / median``, 1 at
    the roofline. The work is that of the workload's native graph (:func:`case_work`),
    not of the variant's executed graph: a variant that multiplies zeros, or moves
    more bytes, does not raise the bound it is judged against.

    * inference: FLOPs = 2 x MACs; bytes = :meth:`Graph.bytes_moved` (every op reads its
      inputs and writes its output once, no fusion);
    * training (forward, backward, SGD update): FLOPs = 3 x the forward's, since the input
      gradient and the weight gradient of a conv or linear layer each cost its forward's
      MACs; bytes = the forward's, plus per op a backward that reads its output gradient
      and its inputs once and writes one gradient per input ((out + 2 x inputs) elements),
      plus the update (read parameter and gradient, write parameter: 3 x parameters).

Which FLOP/s peak (``roofline_peak``)
    The matmul peak is what a dense GEMM reaches: on a GPU in float16/bfloat16 that is
    the tensor cores, which a depthwise (or other grouped) conv never uses. So a backend
    may report ``fma_flops_per_s`` beside its peaks (torch on CUDA: the CUDA-core FMA
    peak, SMs x FP32 lanes per SM x 2 x the max SM clock, float16 at twice the rate where
    the architecture has packed half FMAs; theoretical, not measured, see
    :mod:`convbench_torch.device`), and :func:`roofline_split` then bounds the FLOPs of
    depthwise/grouped convs by it and those of dense convs and linears by the matmul
    peak: ``roofline_peak`` says ``matmul``, ``fma`` or ``matmul+fma``.

Warm cache (``cache_state``)
    A warm-cache timing (the default) of a case whose bytes fit in the device's last
    level cache (``l2_bytes`` in the peaks, when the backend knows it) can beat the DRAM
    copy peak, so its ``roofline_fraction`` may exceed 1: such rows say
    ``cache_state = warm_fits_l2``; others ``warm`` or ``cold`` (``timing.cold_cache``,
    which flushes the cache before every iteration as ``triton.testing.do_bench`` does).
    None of this has been measured on a GPU yet (docs/gpu.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from convbench.graph import SOURCE_OPS, Graph, node_macs
from convbench.timing import Sampler, TimingConfig, measure

#: How peaks are timed: a few samples of big work, a second or so each.
PEAK_TIMING = TimingConfig(
    warmup_iters=2, warmup_time=0.05, min_sample_time=0.002, min_samples=5, max_samples=30,
    precision=0.05, max_time=1.0, interleave=False,
)  # fmt: skip


@dataclass
class PeakWork:
    """Work a backend runs to measure a device's peaks; each sampler runs ``n`` of it."""

    matmul: Sampler
    matmul_flops: float  #: FLOPs of one product
    copy: Sampler
    copy_bytes: float  #: bytes read plus bytes written by one copy
    description: dict[str, Any] = field(default_factory=dict)  #: sizes, dtype, timer
    close: Callable[[], None] = lambda: None  #: frees the buffers


def peak_key(dtype: str, device: str, threads: int | None) -> str:
    """Key of one peak measurement: the dtype, and the thread count on a CPU."""
    return dtype if device != "cpu" else f"{dtype}/threads={threads}"


def peak_timing(timing: TimingConfig) -> TimingConfig:
    """:data:`PEAK_TIMING` with the run's ``max_time``, clamped to [0.2, 1] seconds."""
    return PEAK_TIMING.model_copy(update={"max_time": min(1.0, max(0.2, timing.max_time))})


def measure_peaks(work: PeakWork, config: TimingConfig = PEAK_TIMING) -> dict[str, Any]:
    """Time ``work``: ``flops_per_s`` and ``bytes_per_s`` (best sample), medians, details."""
    try:
        mm = measure(work.matmul, config)
        cp = measure(work.copy, config)
    finally:
        work.close()
    return {
        "flops_per_s": work.matmul_flops / mm.stats.min,
        "bytes_per_s": work.copy_bytes / cp.stats.min,
        "flops_per_s_median": work.matmul_flops / mm.stats.median,
        "bytes_per_s_median": work.copy_bytes / cp.stats.median,
        "matmul_samples": mm.stats.n,
        "copy_samples": cp.stats.n,
        **work.description,
    }


def _op_elements(graph: Graph, node: Any) -> tuple[int, int]:
    """(output elements, input elements) an op moves (0, 0 for a view such as reshape)."""
    if node.op in SOURCE_OPS or node.op == "reshape":
        return 0, 0
    return node.size, sum(graph[name].size for name in node.inputs)


def case_work(graph: Graph, mode: str, itemsize: int) -> tuple[float, float]:
    """(FLOPs, bytes) of one iteration of ``graph`` in ``mode`` (see the module docstring)."""
    flops = 2.0 * graph.macs()
    moved = float(graph.bytes_moved(itemsize))
    if mode != "training":
        return flops, moved
    backward = sum(out + 2 * ins for out, ins in (_op_elements(graph, n) for n in graph.ops))
    return 3.0 * flops, moved + itemsize * (backward + 3.0 * graph.param_count())


def roofline(flops: float, nbytes: float, peaks: dict[str, Any] | None) -> tuple[float, str] | None:
    """(bound in seconds, ``compute`` or ``memory``), or None without usable peaks."""
    if not peaks or not peaks.get("flops_per_s") or not peaks.get("bytes_per_s"):
        return None
    compute = flops / peaks["flops_per_s"]
    memory = nbytes / peaks["bytes_per_s"]
    return (compute, "compute") if compute >= memory else (memory, "memory")


def case_work_split(graph: Graph, mode: str, itemsize: int) -> tuple[float, float, float]:
    """(FLOPs, of which FMA-only FLOPs, bytes) of one iteration: the FMA-only ones are
    those of grouped convs (depthwise included), which cannot use tensor cores."""
    flops, moved = case_work(graph, mode, itemsize)
    grouped = 2.0 * sum(node_macs(graph, n) for n in graph.ops if n.op == "conv2d" and int(n.attrs.get("groups", 1)) > 1)
    return flops, (3.0 if mode == "training" else 1.0) * grouped, moved


def roofline_split(flops: float, fma_flops: float, nbytes: float, peaks: dict[str, Any] | None) -> tuple[float, str, str] | None:
    """(bound in seconds, ``compute`` or ``memory``, the FLOP/s peak used), or None.

    With an ``fma_flops_per_s`` peak the ``fma_flops`` are bounded by it and the rest
    by the matmul peak; without, all by the matmul peak (as :func:`roofline`)."""
    base = roofline(flops, nbytes, peaks)
    if base is None:
        return None
    fma_peak = (peaks or {}).get("fma_flops_per_s")
    if not fma_peak or fma_flops <= 0:
        return (*base, "matmul")
    rest = max(flops - fma_flops, 0.0)
    compute = rest / peaks["flops_per_s"] + fma_flops / fma_peak
    memory = nbytes / peaks["bytes_per_s"]
    used = "fma" if rest == 0 else "matmul+fma"
    return (compute, "compute", used) if compute >= memory else (memory, "memory", used)


def cache_state(cold: bool, nbytes: float, peaks: dict[str, Any] | None) -> str:
    """``cold``, ``warm`` or ``warm_fits_l2`` (see the module docstring)."""
    if cold:
        return "cold"
    l2 = (peaks or {}).get("l2_bytes")
    return "warm_fits_l2" if l2 and nbytes <= l2 else "warm"
