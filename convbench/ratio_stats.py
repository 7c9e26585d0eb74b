"""Statistics of a ratio NEW/BASE: the bootstrap ratio test of two samples, the paired
test of per-round ratios (across process pairs by random-effects pooling), run-to-run
noise across cases, and random-effects pooling of estimates with their own errors.

Used by the verdicts of :mod:`convbench.compare` (run against run) and
:mod:`convbench.ab` (side by side); the verdict rules themselves live there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import comb
from scipy.stats import mannwhitneyu, norm, wilcoxon

from convbench.timing import summarize

N_BOOT = 2000
#: Most values drawn at once by the bootstrap (bounds its memory: 8 bytes each).
BOOT_CHUNK = 1 << 21
CONFIDENCE = 0.95
#: Fewest cases from which run-to-run noise is estimated (see :func:`estimate_noise`).
MIN_NOISE_CASES = 8


@dataclass(frozen=True)
class RatioTest:
    """NEW against BASE on one case: ratio of medians, its bootstrap CI, the U test."""

    ratio: float  #: median(new) / median(base)
    ci_low: float
    ci_high: float
    p_value: float
    n_base: int
    n_new: int
    #: smallest p-value the U test can give with these sample counts (no ties)
    min_p: float
    #: standard deviation of the bootstrap log-ratios (standard error of log(ratio))
    se: float = 0.0

    def bounds(self, noise: float = 0.0, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """The bootstrap CI moved to level ``confidence`` and widened for run-to-run noise
        ``noise`` (sd of log ratio): on a log scale each bound of the 95% bootstrap CI
        moves out by ``z(confidence) * sqrt(se**2 + noise**2) - z(0.95) * se``, so the
        bootstrap's asymmetry is kept; at 95% without noise, the bootstrap CI itself."""
        extra = z_value(confidence) * math.hypot(self.se, noise) - z_value(CONFIDENCE) * self.se
        return self.ci_low * math.exp(-extra), self.ci_high * math.exp(extra)


def z_value(confidence: float) -> float:
    """The two-sided normal quantile of ``confidence`` (1.96 at 0.95)."""
    return float(norm.ppf(0.5 + confidence / 2))


def _boot_medians(values: np.ndarray, groups: np.ndarray | None, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Medians of ``n_boot`` bootstrap resamples of ``values``.

    With ``groups`` naming two or more clusters (runs), two stages: draw as many clusters
    as there are, with replacement, then within each drawn cluster as many samples as it
    holds, with replacement. Replicates are drawn in chunks of at most ``BOOT_CHUNK``
    values, so memory stays bounded for long sample lists.
    """
    n = values.size
    if groups is None or len(set(groups.tolist())) < 2:
        step = max(1, BOOT_CHUNK // n)
        return np.concatenate(
            [np.median(values[rng.integers(0, n, size=(min(step, n_boot - i), n))], axis=1) for i in range(0, n_boot, step)]
        )
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    vals = values[order]
    sizes = np.bincount(inverse)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    k, m = sizes.size, int(sizes.max())
    step = max(1, BOOT_CHUNK // (k * m))
    out = []
    for i in range(0, n_boot, step):
        b = min(step, n_boot - i)
        chosen = rng.integers(0, k, size=(b, k))
        size = sizes[chosen][..., None]
        pos = offsets[chosen][..., None] + np.floor(rng.random((b, k, m)) * size).astype(np.int64)
        draws = np.where(np.arange(m)[None, None, :] < size, vals[pos], np.nan)
        out.append(np.nanmedian(draws.reshape(b, -1), axis=1))
    return np.concatenate(out)


def min_p_value(n1: int, n2: int) -> float:
    """Smallest two-sided exact Mann-Whitney p-value for sample sizes n1, n2 (no ties)."""
    return float(min(1.0, 2.0 / comb(n1 + n2, n1, exact=False)))


def ratio_test(
    base: Sequence[float] | np.ndarray,
    new: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
    *,
    base_groups: Sequence[Any] | np.ndarray | None = None,
    new_groups: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
) -> RatioTest:
    """Ratio of medians NEW/BASE, its percentile-bootstrap CI and the U test p-value.

    ``*_groups`` label each sample with its run (or process): with two or more labels
    the side is bootstrapped in two stages (see :func:`_boot_medians`).
    """
    b = np.asarray(base, dtype=np.float64)
    v = np.asarray(new, dtype=np.float64)
    if b.size < 1 or v.size < 1:
        raise ValueError("ratio_test needs at least one sample on each side")
    ratio = float(np.median(v) / np.median(b))
    bg = None if base_groups is None else np.asarray(base_groups)
    ng = None if new_groups is None else np.asarray(new_groups)
    boot = _boot_medians(v, ng, rng, n_boot) / _boot_medians(b, bg, rng, n_boot)
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    p = float(mannwhitneyu(v, b, alternative="two-sided").pvalue) if b.size > 1 or v.size > 1 else 1.0
    se = float(np.std(np.log(boot), ddof=1))
    return RatioTest(ratio, float(low), float(high), p, int(b.size), int(v.size), min_p_value(b.size, v.size), se)


def estimate_noise(log_ratios: Sequence[float] | np.ndarray, ses: Sequence[float] | np.ndarray, min_cases: int = MIN_NOISE_CASES) -> float | None:
    """Run-to-run noise: the sd of log(ratio) across cases that the samples within a run
    do not explain, or None with fewer than ``min_cases`` cases.

    ``tau**2 = max(0, MAD**2 - median(se**2))``, MAD the normal-consistent median absolute
    deviation of the log-ratios around their median: robust to a minority of changed
    cases, and blind to a shift shared by every case (it measures spread, not level).
    """
    lr = np.asarray(log_ratios, dtype=np.float64)
    se = np.asarray(ses, dtype=np.float64)
    keep = np.isfinite(lr) & np.isfinite(se)
    lr, se = lr[keep], se[keep]
    if lr.size < min_cases:
        return None
    mad = 1.4826 * float(np.median(np.abs(lr - np.median(lr))))
    return math.sqrt(max(0.0, mad**2 - float(np.median(se**2))))


def median_se(logs: np.ndarray) -> float:
    """Standard error of the median of ``logs``: 1.2533 sigma / sqrt(n), sigma from the
    normal-consistent MAD (robust to the rare wild round), else the sd."""
    n = logs.size
    if n < 2:
        return math.inf
    sigma = 1.4826 * float(np.median(np.abs(logs - np.median(logs))))
    if sigma == 0:
        sigma = float(np.std(logs, ddof=1))
    return 1.2533 * sigma / math.sqrt(n)


def random_effects(estimates: Sequence[float], ses: Sequence[float]) -> tuple[float, float, float]:
    """DerSimonian-Laird random-effects pooling: ``(mean, se, tau)`` of estimates with
    within-standard errors ``ses``; ``tau`` is the sd between them that their own errors
    do not explain (0 when they agree), and ``se`` includes it."""
    y = np.asarray(estimates, dtype=np.float64)
    v = np.maximum(np.asarray(ses, dtype=np.float64) ** 2, 1e-12)
    w = 1 / v
    fixed = float(np.sum(w * y) / np.sum(w))
    q = float(np.sum(w * (y - fixed) ** 2))
    scale = float(np.sum(w) - np.sum(w**2) / np.sum(w))
    tau2 = max(0.0, (q - (y.size - 1)) / scale) if scale > 0 else 0.0
    w_star = 1 / (v + tau2)
    return float(np.sum(w_star * y) / np.sum(w_star)), math.sqrt(1 / float(np.sum(w_star))), math.sqrt(tau2)


def paired_test(ratios: Sequence[float], confidence: float = 0.95, groups: Sequence[Any] | None = None) -> RatioTest:
    """The paired test of per-round ratios NEW/BASE.

    One process pair (``groups`` None or one label): their median with its order-statistic
    CI, the two-sided Wilcoxon signed-rank p-value of the log ratios against 0, and the
    smallest p-value ``n`` rounds allow. Several pairs (``groups`` labels each round with
    its pair): each pair's median log ratio with its standard error, pooled by
    :func:`random_effects`, so that a pair whose processes differ from the others widens
    the interval instead of deciding the verdict; z-interval and z-test on the pooled
    mean. ``se`` is the standard error of the log ratio either way.
    """
    values = np.asarray(ratios, dtype=np.float64)
    keep = (values > 0) & np.isfinite(values)
    r = values[keep]
    n = int(r.size)
    if n < 1:
        raise ValueError("paired_test needs at least one ratio")
    labels = None if groups is None else np.asarray(groups)[keep]
    min_p = min(1.0, 2.0 ** (1 - n))
    if labels is not None and len(set(labels.tolist())) >= 2:
        logs = np.log(r)
        parts = [logs[labels == g] for g in dict.fromkeys(labels.tolist())]
        parts = [x for x in parts if x.size >= 2]
        if len(parts) >= 2:
            mean, se, _ = random_effects([float(np.median(x)) for x in parts], [median_se(x) for x in parts])
            half = z_value(confidence) * se
            p = float(2 * norm.sf(abs(mean) / se)) if se > 0 else (1.0 if mean == 0 else 0.0)
            return RatioTest(math.exp(mean), math.exp(mean - half), math.exp(mean + half), p, n, n, min_p, se)
    stats = summarize(r.tolist(), confidence)
    logs = np.log(r)
    p = float(wilcoxon(logs).pvalue) if n >= 2 and np.any(logs != 0) else 1.0
    se = 1.2533 * float(np.std(logs, ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return RatioTest(stats.median, stats.ci_low, stats.ci_high, p, n, n, min_p, se)
