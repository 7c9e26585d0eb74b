"""The timing protocol and its statistics (docs/timing.md).

Framework-free: a backend hands in a :data:`Sampler` (a callable that runs ``n``
iterations and returns their total seconds) and gets back a :class:`Measurement`.
:func:`host_sampler` builds a sampler from a step and a synchronize function; a GPU
backend may instead build one from device events on its own stream.

Statistics
    :func:`summarize` reports the median with a distribution-free confidence interval
    from binomial order statistics (see :func:`median_ci_ranks`), quartiles (linear
    interpolation, NumPy's default), mean, sample stdev, min and max.

Protocol (:func:`measure`)
    1. Warm up: at least ``warmup_iters`` iterations and at least ``warmup_time``
       seconds, in batches that grow geometrically.
    2. Calibrate the inner loop count so that one sample lasts at least
       ``min_sample_time`` (see :func:`measure` for the cap on slow ops).
    3. Sample until converged or the budget is spent (see :func:`measure`).

Interleaving (:func:`measure_interleaved`) samples several samplers in shuffled rounds
and reports per-round ratios against a baseline, which survive machine drift.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy.special import bdtr  # binomial CDF; scipy.stats costs 0.7 s per worker start

from convbench.contention import (
    CONTENDED_FRACTION,
    ContentionRule,
    Load,
    Monitor,
    QuietBudget,
    Snapshot,
    mean_load,
    own_faults,
)

__all__ = [
    "GUARD_MODES",
    "Guard",
    "InterleavedMeasurement",
    "Measurement",
    "Sampler",
    "SamplerError",
    "Stats",
    "TimingConfig",
    "DeviceTimed",
    "host_sampler",
    "measure",
    "measure_interleaved",
    "median_ci_ranks",
    "summarize",
]

Sampler = Callable[[int], float]
"""Runs ``n`` iterations and returns their total duration in seconds."""

Clock = Callable[[], float]

FaultCounter = Callable[[], float | None]
"""The page faults a sampler's process has taken so far (None: unknown)."""

#: The quiet guard's modes (TimingConfig.guard).
GUARD_MODES = ("off", "flag", "wait")


class SamplerError(Exception):
    """A sampler that cannot go on (its worker died): sampling ends, what was measured is kept."""

#: Past the time budget, sampling goes on only until this many samples exist (the
#: fewest whose median one outlier cannot move).
MIN_SLOW_SAMPLES = 3
#: A sample (or round) is never started when it is predicted to end later than
#: ``HARD_LIMIT_FACTOR * max_time`` after sampling began; at least one is always taken.
HARD_LIMIT_FACTOR = 3.0
#: Geometric growth factor of warm-up batches and of the calibration search.
GROWTH = 10
#: Calibration aims this much above ``min_sample_time`` so noise rarely dips below it.
SAFETY = 1.1
_MAX_INNER = 2**31
_MAX_CALIBRATION_STEPS = 40
#: Most single iterations timed to check a warm-up that read every iteration as slow.
_RECHECKS = 3


class TimingConfig(BaseModel):
    """How one case is timed. Times are in seconds."""

    model_config = ConfigDict(extra="forbid")

    warmup_iters: int = Field(3, ge=0, description="minimum warm-up iterations")
    warmup_time: float = Field(0.1, ge=0, description="minimum warm-up seconds")
    min_sample_time: float = Field(0.005, gt=0, description="minimum seconds per sample")
    min_samples: int = Field(10, ge=3, description="minimum samples (rounds when interleaved)")
    max_samples: int = Field(1000, ge=3, description="maximum samples (rounds when interleaved)")
    precision: float = Field(
        0.02, gt=0, description="converged when the CI half-width of the median / median <= this"
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence level of the CIs")
    max_time: float = Field(5.0, gt=0, description="sampling budget per case (per member)")
    interleave: bool = Field(True, description="interleave compared variants (runner)")
    processes: int = Field(1, ge=1, description="fresh processes per case (runner)")
    passes: int = Field(
        1, ge=1, description="passes over the whole suite, each timing every case with max_time / passes (runner)"
    )
    autotune: bool = Field(
        False, description="let the framework autotune its kernels (cudnn.benchmark), warmed up before timing"
    )
    cold_cache: bool = Field(
        False, description="evict the last-level cache (a GPU's L2) before every iteration, timed one by one"
    )
    rotate_inputs: int = Field(
        1, ge=1, description="cycle through this many copies of the inputs, one per iteration"
    )
    roofline: bool = Field(
        True, description="measure device peaks once per run and each case's roofline fraction"
    )
    guard: Literal["off", "flag", "wait"] | None = Field(
        None,
        description="quiet guard: off (telemetry only), flag (mark contended cases), wait (also wait for "
        "quiet before each case group and retake contended samples); default wait on CPUs, flag on GPUs",
    )
    quiet_wait: float = Field(
        5.0, ge=0, description="most seconds the guard waits for quiet per case group (guard: wait)"
    )
    contention_cores: float = Field(
        0.25, gt=0, description="contended when other work (other processes, steal) uses this many cores"
    )
    contention_pressure: float = Field(
        0.05, gt=0, le=1, description="contended when tasks wait for a CPU this fraction of the time (Linux PSI)"
    )
    speed_tolerance: float | None = Field(
        None, ge=0,
        description="opt-in: contended when the machine's own speed (the speed probe, convbench.speed_probe: "
        "CPU cases) is this far from its reference, either way (e.g. 0.1); 0 or null (the default): no probe",
    )
    allocator: Literal["steady", "system"] = Field(
        "steady",
        description="steady: workers keep freed memory (glibc tunables), so no step page-faults on memory a "
        "previous step freed; system: the allocator as the system configures it (convbench.allocator)",
    )

    @field_validator("guard", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """YAML reads a bare ``off`` as false: take it as "off"."""
        return "off" if value is False else value

    def guard_for(self, device: str) -> str:
        """The guard mode of a case on ``device`` (the default: wait on CPUs, flag on GPUs)."""
        return self.guard or ("wait" if device == "cpu" else "flag")

    def rule(self) -> ContentionRule:
        return ContentionRule(cores=self.contention_cores, pressure=self.contention_pressure, speed=self.speed_tolerance or None)

    @model_validator(mode="after")
    def _check_sample_bounds(self) -> TimingConfig:
        if self.max_samples < self.min_samples:
            raise ValueError(
                f"max_samples ({self.max_samples}) must be >= min_samples ({self.min_samples})"
            )
        return self


def host_sampler(
    step: Callable[[], None],
    sync: Callable[[], None],
    clock: Clock = time.perf_counter,
    before: Callable[[], None] | None = None,
) -> Sampler:
    """A sampler timing ``n`` calls of ``step`` by host wall clock.

    ``sync`` runs before each clock read: a device may return from ``step`` before its
    work is done, and work queued earlier must not leak into this sample. With
    ``before`` (e.g. a cache flush) each iteration is timed alone, ``before`` and a
    ``sync`` running untimed ahead of it; the sample is the sum of the iterations.
    """

    def sample(n: int) -> float:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if before is not None:
            total = 0.0
            for _ in range(n):
                before()
                sync()
                t0 = clock()
                step()
                sync()
                total += clock() - t0
            return total
        sync()
        t0 = clock()
        for _ in range(n):
            step()
        sync()
        return clock() - t0

    return sample


class DeviceTimed:
    """A device-event sampler that also records the host wall seconds of every call.

    ``device(n)`` runs ``n`` iterations and returns their device seconds (events around
    them, the last one waited for); this wrapper reads the host clock before it and
    after it returns, so each call yields both. The host seconds span the first launch
    to the end of the last iteration: the timer a host-timed backend reports, and well
    above the device seconds when the step is launch-bound (the device waits for the
    host between kernels). :meth:`host_samples` gives the host seconds of the calls
    the statistics saw. Used by the worker for every CUDA case with device events
    (tests: fakes only; it has not run on a GPU).
    """

    def __init__(self, device: Sampler, clock: Clock = time.perf_counter) -> None:
        self.device = device
        self.clock = clock
        self.calls: list[tuple[int, float]] = []  #: (n, host seconds) of every call

    def __call__(self, n: int) -> float:
        t0 = self.clock()
        seconds = self.device(n)
        self.calls.append((n, self.clock() - t0))
        return seconds

    def host_samples(self, count: int) -> list[float]:
        """Per-iteration host seconds of the last ``count`` calls (the samples: warm-up
        and calibration come first); fewer if fewer calls were made."""
        tail = self.calls[-count:] if count > 0 else []
        return [seconds / n for n, seconds in tail]


# --------------------------------------------------------------------------- statistics


@lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int, float]:
    """1-based ranks ``(l, u)`` of the order statistics bounding the median, and coverage.

    The number ``B`` of samples below the true median is Binomial(n, 1/2), so for
    ``u = n + 1 - l`` the interval ``[x_(l), x_(u)]`` contains the median with
    probability ``1 - 2 * P(B <= l - 1)`` whatever the distribution (continuous).
    ``l`` is the largest rank with ``P(B <= l - 1) <= (1 - confidence) / 2``: the
    narrowest symmetric interval whose coverage is at least ``confidence``. When no
    rank qualifies (n <= 5 at 95%), the rule falls back to ``[min, max]`` (``l = 1``)
    and the returned coverage, ``1 - 2**(1 - n)``, is below ``confidence``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    cdf = bdtr(np.arange(n), n, 0.5)  # cdf[j] = P(B <= j)
    ok = np.flatnonzero(cdf <= (1 - confidence) / 2)
    low = int(ok[-1]) + 1 if ok.size else 1
    coverage = float(1 - 2 * cdf[low - 1])
    return low, n + 1 - low, coverage


@dataclass
class Stats:
    """Summary of a set of samples (all values in the samples' unit)."""

    n: int
    median: float
    q1: float
    q3: float
    iqr: float
    ci_low: float  #: lower bound of the confidence interval of the median
    ci_high: float  #: upper bound of the confidence interval of the median
    mean: float
    stdev: float  #: sample standard deviation (ddof=1); 0 for n == 1
    min: float
    max: float
    confidence: float = 0.95  #: the level asked for
    ci_coverage: float = 0.95  #: exact coverage of [ci_low, ci_high]; < confidence if n tiny

    @property
    def rel_ci_halfwidth(self) -> float:
        """Half-width of the median's CI relative to the median."""
        half = (self.ci_high - self.ci_low) / 2
        if self.median == 0:
            return 0.0 if half == 0 else math.inf
        return half / abs(self.median)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the fields plus ``rel_ci_halfwidth``."""
        d = asdict(self)
        d["rel_ci_halfwidth"] = self.rel_ci_halfwidth
        return d


def summarize(samples: Sequence[float], confidence: float = 0.95) -> Stats:
    """Median with its order-statistic CI (:func:`median_ci_ranks`), quartiles, moments."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = int(x.size)
    if n == 0:
        raise ValueError("summarize() needs at least one sample")
    low, high, coverage = median_ci_ranks(n, confidence)
    q1, median, q3 = (float(v) for v in np.percentile(x, [25, 50, 75]))
    return Stats(
        n=n,
        median=median,
        q1=q1,
        q3=q3,
        iqr=q3 - q1,
        ci_low=float(x[low - 1]),
        ci_high=float(x[high - 1]),
        mean=float(x.mean()),
        stdev=float(x.std(ddof=1)) if n > 1 else 0.0,
        min=float(x[0]),
        max=float(x[-1]),
        confidence=confidence,
        ci_coverage=coverage,
    )


def _rel_ci(sorted_samples: list[float], confidence: float) -> float:
    """``Stats.rel_ci_halfwidth`` of already sorted samples, without the other stats."""
    n = len(sorted_samples)
    low, high, _ = median_ci_ranks(n, confidence)
    mid = n // 2
    median = sorted_samples[mid] if n % 2 else (sorted_samples[mid - 1] + sorted_samples[mid]) / 2
    half = (sorted_samples[high - 1] - sorted_samples[low - 1]) / 2
    if median == 0:
        return 0.0 if half == 0 else math.inf
    return half / abs(median)


# --------------------------------------------------------------------------- measurement


class Guard:
    """The quiet guard of one case group (docs/timing.md, "The quiet guard").

    Takes a snapshot of the machine's counters before and after every sample (or round),
    judges each by the :class:`~convbench.contention.ContentionRule`, and in mode
    ``wait`` waits for quiet before the group (:meth:`before_group`) and after each
    contended sample, which is then dropped and retaken, while ``quiet_wait`` seconds per
    group last; after that contended samples are kept and flagged. Sampling stays bounded
    by the case's own time budget: the guard never hangs a run. With no monitor it does
    nothing.
    """

    def __init__(self, monitor: Monitor | None = None, mode: str = "off", quiet_wait: float = 0.0) -> None:
        if mode not in GUARD_MODES:
            raise ValueError(f"guard mode must be one of {GUARD_MODES}, got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.budget = QuietBudget(quiet_wait if mode == "wait" and monitor is not None else 0.0)

    @classmethod
    def for_case(cls, monitor: Monitor | None, config: TimingConfig, device: str) -> Guard:
        return cls(monitor, config.guard_for(device), config.quiet_wait)

    def before_group(self) -> None:
        if self.mode == "wait" and self.monitor is not None:
            self.monitor.wait_quiet(self.budget)

    def begin(self) -> Snapshot | None:
        return self.monitor.mark() if self.monitor is not None else None

    def end(self, start: Snapshot | None) -> tuple[Load | None, str | None]:
        """The load since ``start`` and why it is contended (None: quiet, or guard off)."""
        if start is None or self.monitor is None:
            return None, None
        load = self.monitor.load(start, self.monitor.mark())
        return load, None if self.mode == "off" else self.monitor.rule.reason(load)

    def retake(self, reason: str | None, load: Load | None = None) -> bool:
        """Whether a sample judged ``reason`` is dropped (mode wait, while the group's quiet
        budget lasts); waits for quiet first when its ``load`` shows lasting work (see
        :meth:`~convbench.contention.ContentionRule.sustained`), and retakes at once after a
        blip (tasks waited for a CPU, nothing else ran): the next sample is most likely
        clean, and those retakes spend the case's own time budget. Once the quiet budget is
        spent, contended samples are kept (and the case flagged): retaking them on a
        machine that stays busy would only spend the time budget to keep the same kind of
        samples."""
        if reason is None or self.mode != "wait" or self.budget.left < 0.01:
            return False
        assert self.monitor is not None
        if load is None or self.monitor.rule.sustained(load):
            self.monitor.wait_quiet(self.budget)
        return True

    def verdict(self, used: list[int], loads: list[Load | None], reasons: list[str | None], wanted: int) -> tuple[bool | None, str | None]:
        """``(contended, reason)`` of a case from the samples its statistics use
        (``used``, indices into the per-sample ``loads`` and ``reasons``)."""
        if self.mode == "off" or self.monitor is None:
            return None, None
        overall = mean_load(loads[i] for i in used if loads[i] is not None)
        flagged = sum(reasons[i] is not None for i in used)
        seen = overall.describe() if overall else "no telemetry"
        dropped = len(loads) - len(used)
        kept = len(used) - flagged
        if flagged > CONTENDED_FRACTION * len(used):
            return True, f"{flagged} of {len(used)} samples used were contended ({dropped} dropped): {seen}"
        if overall is not None and self.monitor.rule.reason(overall):
            return True, f"contended while timed: {seen}"
        if dropped and kept < wanted:
            return True, f"only {kept} clean samples of {wanted} wanted ({dropped} dropped as contended): {seen}"
        return False, None


@dataclass
class Measurement:
    """The timing of one sampler. Times are per iteration, in seconds.

    ``samples`` holds every sample taken, dropped ones included; ``kept[i]`` says whether
    sample ``i`` is one the statistics use (a sample the guard dropped as contended is
    not, unless too few clean ones remained: then all are used and ``contended``).
    """

    samples: list[float]  #: per-iteration seconds, one per sample (sample seconds / inner)
    inner: int  #: iterations per sample
    warmup_iters: int  #: warm-up iterations done
    warmup_seconds: float
    stats: Stats
    converged: bool  #: n >= min_samples and stats.rel_ci_halfwidth <= precision
    elapsed: float  #: seconds of the sampling phase (interleaved: this member's share)
    kept: list[bool] = field(default_factory=list)  #: per sample: used by the statistics
    loads: list[Load | None] = field(default_factory=list)  #: per sample (round): the machine's load
    reasons: list[str | None] = field(default_factory=list)  #: per sample: why it was contended (None: quiet)
    contended: bool | None = None  #: None: guard off
    contention: str | None = None  #: why it is contended
    load: Load | None = None  #: mean load over the used samples
    dropped: int = 0  #: samples dropped as contended
    quiet_waited: float = 0.0  #: seconds the guard waited for quiet (before the group and between samples)
    faults: list[float | None] = field(default_factory=list)  #: per sample: page faults per iteration

    @property
    def page_faults(self) -> float | None:
        """Median page faults per iteration over the samples the statistics use."""
        used = _used(self.kept) if self.kept else list(range(len(self.samples)))
        known = sorted(self.faults[i] for i in used if i < len(self.faults) and self.faults[i] is not None)
        return statistics.median(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        """Everything but the raw samples; ``stats`` nested as a dict."""
        return {
            "inner": self.inner,
            "warmup_iters": self.warmup_iters,
            "warmup_seconds": self.warmup_seconds,
            "converged": self.converged,
            "elapsed": self.elapsed,
            "stats": self.stats.to_dict(),
            "contended": self.contended,
            "contention": self.contention,
            "dropped": self.dropped,
        }


@dataclass
class InterleavedMeasurement:
    """Several samplers timed in shuffled rounds, with per-round ratios to a baseline."""

    members: dict[str, Measurement]
    baseline: str
    ratios: dict[str, list[float]]  #: per round: member / its baseline per-iteration time
    ratio_stats: dict[str, Stats]  #: over the used rounds
    converged: bool  #: every member's median CI and every ratio CI within precision
    rounds: int  #: rounds taken, dropped ones included
    elapsed: float  #: seconds of the whole sampling phase
    orders: list[list[str]] = field(default_factory=list)  #: member order of each round
    baselines: dict[str, str] = field(default_factory=dict)  #: member -> the member its ratio divides by
    failed: dict[str, str] = field(default_factory=dict)  #: member -> why its sampler stopped

    def to_dict(self) -> dict[str, Any]:
        """Everything but raw samples, raw ratios and round orders."""
        return {
            "baseline": self.baseline,
            "converged": self.converged,
            "rounds": self.rounds,
            "elapsed": self.elapsed,
            "members": {k: m.to_dict() for k, m in self.members.items()},
            "ratio_stats": {k: s.to_dict() for k, s in self.ratio_stats.items()},
        }


def _used(kept: list[bool]) -> list[int]:
    """Indices the statistics use: the kept samples, or all when fewer than MIN_SLOW_SAMPLES are."""
    idx = [i for i, k in enumerate(kept) if k]
    return idx if len(idx) >= MIN_SLOW_SAMPLES else list(range(len(kept)))


def _warmup(
    sampler: Sampler, config: TimingConfig, clock: Clock
) -> tuple[int, float, float | None]:
    """Run >= warmup_iters iterations and >= warmup_time seconds.

    Batches start at one iteration and grow at most ``GROWTH``-fold, sized from the last
    batch's per-iteration time to what is still missing. Returns (iterations, seconds,
    per-iteration seconds of the last batch), the last being None unless two or more
    batches ran: the first call alone may be dominated by compilation or autotuning.
    """
    start = clock()
    done, batch, per, batches = 0, 1, None, 0
    while done < config.warmup_iters or clock() - start < config.warmup_time:
        t = sampler(batch)
        done += batch
        batches += 1
        per = t / batch
        spent = clock() - start
        if done >= config.warmup_iters and spent >= config.warmup_time:
            break
        need = config.warmup_iters - done
        if spent < config.warmup_time:
            more = (config.warmup_time - spent) / per if per > 0 else math.inf
            need = max(need, math.ceil(more) if math.isfinite(more) else _MAX_INNER)
        batch = max(1, min(need, batch * GROWTH, _MAX_INNER))
    return done, clock() - start, per if batches >= 2 else None


def _calibrate(sampler: Sampler, config: TimingConfig, hint: float | None) -> int:
    """Inner iteration count so that one sample lasts >= min_sample_time.

    Start from the warm-up's per-iteration time (``hint``) or 1, grow ``GROWTH``-fold
    while a sample is too short to trust (< min_sample_time / GROWTH), then set
    ``n = ceil(SAFETY * min_sample_time / per_iteration)`` and check it with one more
    sample. ``n`` is capped so one sample lasts at most
    ``max(min_sample_time, max_time / min_samples)``: a slow op gets ``n = 1``.

    When the warm-up's iterations lasted >= min_sample_time each, but less than that cap,
    one more iteration is timed alone before ``n = 1`` is believed (up to
    :data:`_RECHECKS` while each is under 0.8 of the last): a fresh process pays for its
    first calls (thread pools, kernel selection, first-touch memory), and measured with
    torch 2.13 on 2 cores a 0.2 ms depthwise conv took 70-96 ms per iteration through the
    whole warm-up of ``--preset quick`` (3 iterations), which made its samples 1
    iteration, 0.2 ms, long: 25 times shorter than min_sample_time. An op slower than the
    cap gets ``n = 1`` without the extra iteration.
    """
    mst = config.min_sample_time
    cap = max(mst, config.max_time / config.min_samples)

    def limit(per: float) -> int:
        if per <= 0:
            return _MAX_INNER
        return min(_MAX_INNER, max(1, math.floor(cap / per), math.ceil(mst / per)))

    def target(per: float) -> int:
        return min(math.ceil(SAFETY * mst / per), limit(per))

    if hint is not None and hint >= mst:
        if hint >= cap:
            return 1
        for _ in range(_RECHECKS):
            t = sampler(1)
            if t < mst or t >= 0.8 * hint:  # fast after all, or steadily slow
                break
            hint = t
        if t >= mst:
            return 1
        hint = t
    n = target(hint) if hint is not None and hint > 0 else 1
    for _ in range(_MAX_CALIBRATION_STEPS):
        t = sampler(n)
        per = t / n
        if t >= mst:
            # Long enough; add the safety margin, or shrink if over the cap.
            return target(per) if n > limit(per) else max(n, target(per))
        new = n * GROWTH if per <= 0 or t < mst / GROWTH else math.ceil(SAFETY * mst / per)
        new = min(max(new, n + 1), limit(per))
        if new <= n:
            return n
        n = new
    return n


def _stop_reason(count: int, elapsed: float, budget: float, max_count: int, taken: int | None = None) -> str | None:
    """Why the (unconverged) sampling loop stops now, or None to go on; ``count`` samples
    are usable of ``taken`` (default ``count``) taken in ``elapsed`` seconds."""
    taken = taken or count
    if taken >= max_count:
        return "max_samples"
    if elapsed >= budget and count >= MIN_SLOW_SAMPLES:
        return "max_time"
    if elapsed + elapsed / taken > HARD_LIMIT_FACTOR * budget:
        return "hard_limit"
    return None


def measure(
    sampler: Sampler,
    config: TimingConfig,
    clock: Clock = time.perf_counter,
    guard: Guard | None = None,
    faults: FaultCounter | None = own_faults,
) -> Measurement:
    """Warm up, calibrate and sample one sampler (see the module docstring).

    Stopping rule: after each sample, stop converged when there are >= min_samples
    samples and the CI of the median is within ``precision`` of it; otherwise stop
    unconverged at ``max_samples``, or once ``max_time`` seconds of sampling are spent
    and at least ``MIN_SLOW_SAMPLES`` (3) samples exist, or when the next sample is
    predicted (from the mean sample so far) to end after ``HARD_LIMIT_FACTOR * max_time``.
    So an op at most ``max_time`` long per iteration gets >= 3 samples (a 2 s op with
    max_time 5 gets 3, in 6 s), a slower one as many as fit in 3x max_time (at least
    1), and a normal op >= min_samples, because calibration caps one sample at
    ``max_time / min_samples``.

    With a ``guard`` every sample is judged for contention; in mode ``wait`` a contended
    one is dropped and retaken (counting towards the time budget and ``max_samples``,
    but not towards the samples the rule above counts); see :class:`Guard`.
    """
    guard = guard or Guard()
    warm_iters, warm_seconds, hint = _warmup(sampler, config, clock)
    inner = _calibrate(sampler, config, hint)
    waited0 = guard.budget.waited
    guard.before_group()
    samples: list[float] = []
    kept: list[bool] = []
    loads: list[Load | None] = []
    reasons: list[str | None] = []
    ordered: list[float] = []
    converged = False
    start = clock()
    paused = 0.0  # seconds spent waiting for quiet, left out of the time budget
    per_sample_faults: list[float | None] = []
    while True:
        snap = guard.begin()
        f0 = faults() if faults else None
        value = sampler(inner) / inner
        per_sample_faults.append(_faults_per_iteration(f0, faults() if faults else None, inner))
        load, reason = guard.end(snap)
        samples.append(value)
        loads.append(load)
        reasons.append(reason)
        w0 = guard.budget.waited
        drop = guard.retake(reason, load)
        paused += guard.budget.waited - w0
        kept.append(not drop)
        if not drop:
            bisect.insort(ordered, value)
        elapsed = clock() - start - paused
        count = len(ordered)
        if count >= config.min_samples and _rel_ci(ordered, config.confidence) <= config.precision:
            converged = True
            break
        if _stop_reason(count, elapsed, config.max_time, config.max_samples, len(samples)):
            break
    used = _used(kept)
    if len(used) != sum(kept):
        kept = [True] * len(samples)
    contended, why = guard.verdict(used, loads, reasons, config.min_samples)
    return Measurement(
        samples=samples,
        inner=inner,
        warmup_iters=warm_iters,
        warmup_seconds=warm_seconds,
        stats=summarize([samples[i] for i in used], config.confidence),
        converged=converged,
        elapsed=clock() - start - paused,
        kept=kept,
        loads=loads,
        reasons=reasons,
        contended=contended,
        contention=why,
        load=mean_load(loads[i] for i in used if loads[i] is not None),
        dropped=len(samples) - len(used),
        quiet_waited=guard.budget.waited - waited0,
        faults=per_sample_faults,
    )


def _faults_per_iteration(before: float | None, after: float | None, inner: int) -> float | None:
    return None if before is None or after is None else (after - before) / inner


def measure_interleaved(
    samplers: Mapping[str, Sampler],
    config: TimingConfig,
    baseline: str,
    clock: Clock = time.perf_counter,
    seed: int = 0,
    guard: Guard | None = None,
    baselines: Mapping[str, str] | None = None,
    faults: Mapping[str, FaultCounter | None] | None = None,
    same_inner: bool = False,
) -> InterleavedMeasurement:
    """Time several samplers side by side, in rounds, against ``baseline`` (docs/timing.md).

    Each member is warmed up and calibrated on its own. Then every round takes one
    sample of each member in an order shuffled by ``random.Random(seed)``, and records
    each non-baseline member's per-iteration time divided by its baseline's of the same
    round (``baselines``, when given, maps the members that get ratios to their own
    baselines; default: every member against ``baseline``). Stopping follows :func:`measure` with rounds for samples and a budget of
    ``max_time * len(samplers)``; it is converged when, after >= min_samples rounds,
    every member's median and every ratio's median have a CI within ``precision``.
    A member's own ``converged`` is its own median criterion; its ``elapsed`` is the
    time spent in its own samples. With a ``guard``, whole rounds are judged, dropped
    and retaken (see :func:`measure`). A sampler raising :class:`SamplerError` ends the
    sampling: the complete rounds so far are kept, and ``failed`` names the member.
    ``faults`` maps a member to the page-fault counter of the process it runs in
    (default: this process's, for every member). With ``same_inner`` (members that run
    the same work, as ``ab``'s two sides of a case), a member and its baseline take the
    larger of their two calibrated iteration counts: calibrated apart, under different
    load, they would weigh a sample's fixed costs differently (measured: 3 against 7
    iterations per sample made an A/A pair read 9-21% slower on one side).
    """
    if baseline not in samplers:
        raise ValueError(f"baseline {baseline!r} is not one of {sorted(samplers)}")
    guard = guard or Guard()
    names = list(samplers)
    pairs = dict(baselines) if baselines is not None else dict.fromkeys(names, baseline)
    pairs = {n: b for n, b in pairs.items() if b != n and b in samplers}
    rng = random.Random(seed)
    prepared: dict[str, tuple[int, float, int]] = {}
    for name in names:
        warm_iters, warm_seconds, hint = _warmup(samplers[name], config, clock)
        prepared[name] = (warm_iters, warm_seconds, _calibrate(samplers[name], config, hint))
    if same_inner:
        for name, base_name in pairs.items():
            inner = max(prepared[name][2], prepared[base_name][2])
            prepared[name] = (*prepared[name][:2], inner)
            prepared[base_name] = (*prepared[base_name][:2], inner)
    waited0 = guard.budget.waited
    guard.before_group()

    counters = dict.fromkeys(names, own_faults) if faults is None else {name: faults.get(name) for name in names}
    member_faults: dict[str, list[float | None]] = {name: [] for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    ordered: dict[str, list[float]] = {name: [] for name in names}
    spent: dict[str, float] = dict.fromkeys(names, 0.0)
    ratios: dict[str, list[float]] = {name: [] for name in pairs}
    ordered_ratios: dict[str, list[float]] = {name: [] for name in pairs}
    orders: list[list[str]] = []
    kept: list[bool] = []
    loads: list[Load | None] = []
    reasons: list[str | None] = []
    failed: dict[str, str] = {}
    budget = config.max_time * len(names)
    converged = False
    paused = 0.0
    start = clock()
    while True:
        order = names[:]
        rng.shuffle(order)
        snap = guard.begin()
        got: dict[str, float] = {}
        got_faults: dict[str, float | None] = {}
        try:
            for name in order:
                inner = prepared[name][2]
                counter = counters[name]
                f0 = counter() if counter else None
                t0 = clock()
                got[name] = samplers[name](inner) / inner
                spent[name] += clock() - t0
                got_faults[name] = _faults_per_iteration(f0, counter() if counter else None, inner)
        except SamplerError as exc:
            failed[name] = str(exc)
            break
        load, reason = guard.end(snap)
        orders.append(order)
        for name in names:
            samples[name].append(got[name])
            member_faults[name].append(got_faults[name])
        w0 = guard.budget.waited
        drop = guard.retake(reason, load)
        paused += guard.budget.waited - w0
        kept.append(not drop)
        loads.append(load)
        reasons.append(reason)
        for name, base_name in pairs.items():
            base = got[base_name]
            ratios[name].append(got[name] / base if base > 0 else math.inf)
        if not drop:
            for name in names:
                bisect.insort(ordered[name], got[name])
            for name in pairs:
                bisect.insort(ordered_ratios[name], ratios[name][-1])
        count = len(ordered[baseline])
        if count >= config.min_samples and all(
            _rel_ci(s, config.confidence) <= config.precision
            for s in [*ordered.values(), *ordered_ratios.values()]
        ):
            converged = True
            break
        if _stop_reason(count, clock() - start - paused, budget, config.max_samples, len(orders)):
            break

    used = _used(kept)
    if len(used) != sum(kept):
        kept = [True] * len(kept)
    contended, why = guard.verdict(used, loads, reasons, config.min_samples)
    mean = mean_load(loads[i] for i in used if loads[i] is not None)
    members = {}
    for name in names if used else []:
        warm_iters, warm_seconds, inner = prepared[name]
        own = sorted(samples[name][i] for i in used)
        members[name] = Measurement(
            samples=samples[name],
            inner=inner,
            warmup_iters=warm_iters,
            warmup_seconds=warm_seconds,
            stats=summarize(own, config.confidence),
            converged=len(own) >= config.min_samples and _rel_ci(own, config.confidence) <= config.precision,
            elapsed=spent[name],
            kept=list(kept),
            loads=list(loads),
            reasons=list(reasons),
            contended=contended,
            contention=why,
            load=mean,
            dropped=len(kept) - len(used),
            quiet_waited=guard.budget.waited - waited0,
            faults=member_faults[name],
        )
    return InterleavedMeasurement(
        members=members,
        baseline=baseline,
        ratios=ratios,
        ratio_stats={k: summarize([v[i] for i in used], config.confidence) for k, v in ratios.items() if used},
        converged=converged,
        rounds=len(orders),
        elapsed=clock() - start - paused,
        orders=orders,
        baselines=pairs,
        failed=failed,
    )
