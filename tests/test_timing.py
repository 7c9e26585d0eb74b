"""Tests of the timing protocol on a fake clock: no real timing, no sleeps."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from itertools import permutations

import numpy as np
import pydantic
import pytest

from convbench.timing import (
    HARD_LIMIT_FACTOR,
    SAFETY,
    InterleavedMeasurement,
    Measurement,
    Stats,
    TimingConfig,
    host_sampler,
    measure,
    measure_interleaved,
    median_ci_ranks,
    summarize,
)


class FakeClock:
    """A clock whose time moves only when the fake work says so."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        assert dt >= 0
        self.t += dt


class FakeOp:
    """Fake work: each step advances the clock by ``base * noise * drift(now)``.

    ``noise`` is lognormal with log-sd ``sigma`` (median 1) from a seeded RNG; ``calls``
    and ``iterations`` count the sampler calls and the steps.
    """

    def __init__(
        self,
        clock: FakeClock,
        base: float,
        sigma: float = 0.0,
        seed: int = 0,
        drift: Callable[[float], float] = lambda t: 1.0,
        first: float | None = None,
    ) -> None:
        self.clock, self.base, self.sigma, self.drift, self.first = clock, base, sigma, drift, first
        self.rng = random.Random(seed)
        self.iterations = 0
        self.calls: list[int] = []
        self._sample = host_sampler(self.step, lambda: None, clock)

    def step(self) -> None:
        if self.first is not None and self.iterations == 0:
            dt = self.first  # e.g. JIT compilation on the first call
        else:
            noise = math.exp(self.rng.gauss(0.0, self.sigma)) if self.sigma else 1.0
            dt = self.base * noise * self.drift(self.clock.t)
        self.iterations += 1
        self.clock.advance(dt)

    def __call__(self, n: int) -> float:
        self.calls.append(n)
        return self._sample(n)


# --------------------------------------------------------------------------- config


def test_config_defaults() -> None:
    c = TimingConfig()
    assert (c.warmup_iters, c.warmup_time, c.min_sample_time) == (3, 0.1, 0.005)
    assert (c.min_samples, c.max_samples, c.precision, c.confidence) == (10, 1000, 0.02, 0.95)
    assert (c.max_time, c.interleave, c.processes) == (5.0, True, 1)


@pytest.mark.parametrize(
    "bad",
    [
        {"warmup_iters": -1},
        {"warmup_time": -0.1},
        {"min_sample_time": 0},
        {"min_samples": 2},
        {"min_samples": 20, "max_samples": 19},
        {"max_samples": 5},  # < the default min_samples of 10
        {"precision": 0},
        {"precision": -0.01},
        {"confidence": 1.0},
        {"confidence": 0.0},
        {"max_time": 0},
        {"processes": 0},
        {"warmup_itrs": 3},  # unknown field
    ],
)
def test_config_rejects(bad: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        TimingConfig(**bad)


def test_config_accepts_edges() -> None:
    TimingConfig(warmup_iters=0, warmup_time=0, min_samples=3, max_samples=3)


# --------------------------------------------------------------------------- statistics


def test_summarize_hand_computed_even() -> None:
    s = summarize([3, 1, 4, 1, 5, 9, 2, 6])  # sorted: 1 1 2 3 4 5 6 9
    assert s.n == 8
    assert s.median == 3.5
    assert s.q1 == pytest.approx(1.75)  # rank 1 + 0.25 * 7 = 2.75 -> 1 + 0.75 * (2 - 1)
    assert s.q3 == pytest.approx(5.25)  # rank 6.25 -> 5 + 0.25 * (6 - 5)
    assert s.iqr == pytest.approx(3.5)
    assert s.mean == pytest.approx(31 / 8)
    assert s.stdev == pytest.approx(math.sqrt(52.875 / 7))  # sum of squared deviations 52.875
    assert (s.min, s.max) == (1, 9)
    # n = 8: P(B <= 0) = 1/256 <= 0.025 < P(B <= 1) = 9/256, so l = 1: [x(1), x(8)].
    assert (s.ci_low, s.ci_high) == (1, 9)
    assert s.ci_coverage == pytest.approx(1 - 2 / 256)
    assert s.rel_ci_halfwidth == pytest.approx((9 - 1) / 2 / 3.5)


def test_summarize_hand_computed_odd() -> None:
    values = [7, 3, 11, 1, 9, 5, 2, 10, 4, 8, 6]  # 1..11
    s = summarize(values)
    assert s.median == 6 and s.q1 == 3.5 and s.q3 == 8.5 and s.iqr == 5
    assert s.mean == 6 and s.stdev == pytest.approx(math.sqrt(110 / 10))
    # n = 11: P(B <= 1) = 12/2048 <= 0.025 < P(B <= 2) = 67/2048, so l = 2, u = 10.
    assert (s.ci_low, s.ci_high) == (2, 10)
    assert s.ci_coverage == pytest.approx(1 - 24 / 2048)
    d = s.to_dict()
    assert d["median"] == 6 and d["rel_ci_halfwidth"] == pytest.approx(4 / 6)
    assert all(isinstance(v, int | float) for v in d.values())


def test_summarize_small_n() -> None:
    one = summarize([2.5])
    assert (one.median, one.stdev, one.ci_low, one.ci_high, one.n) == (2.5, 0.0, 2.5, 2.5, 1)
    two = summarize([1.0, 3.0])
    assert two.median == 2.0 and two.stdev == pytest.approx(math.sqrt(2))
    # n = 5 at 95%: no interval reaches 95% (P(B <= 0) = 1/32 > 0.025): min/max, said so.
    five = summarize([5, 4, 3, 2, 1])
    assert (five.ci_low, five.ci_high) == (1, 5)
    assert five.ci_coverage == pytest.approx(1 - 2 / 32) and five.ci_coverage < 0.95
    with pytest.raises(ValueError):
        summarize([])


def _brute_force_rank(n: int, confidence: float) -> int | None:
    """Largest l with P(Binomial(n, 1/2) <= l - 1) <= (1 - confidence) / 2, by exact sums."""
    best = None
    for low in range(1, n // 2 + 2):
        tail = sum(math.comb(n, j) for j in range(low)) / 2**n
        if tail <= (1 - confidence) / 2:
            best = low
    return best


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_ci_matches_binomial_order_statistic_definition(confidence: float) -> None:
    rng = np.random.default_rng(1)
    for n in range(1, 80):
        x = rng.normal(size=n)
        s = summarize(x, confidence)
        xs = np.sort(x)
        low = _brute_force_rank(n, confidence)
        if low is None:
            assert (s.ci_low, s.ci_high) == (xs[0], xs[-1])
            assert s.ci_coverage < confidence
            continue
        assert (s.ci_low, s.ci_high) == (xs[low - 1], xs[n - low])
        tail = sum(math.comb(n, j) for j in range(low)) / 2**n
        assert s.ci_coverage == pytest.approx(1 - 2 * tail)
        assert s.ci_coverage >= confidence
        # The narrowest such: one rank further in falls below the level.
        tail_next = tail + math.comb(n, low) / 2**n
        assert 1 - 2 * tail_next < confidence
        assert median_ci_ranks(n, confidence)[:2] == (low, n + 1 - low)


@pytest.mark.parametrize("dist", ["normal", "lognormal"])
def test_ci_coverage_of_true_median(dist: str) -> None:
    rng = np.random.default_rng(42)
    trials, n = 2000, 30
    data = rng.normal(size=(trials, n)) if dist == "normal" else rng.lognormal(size=(trials, n))
    true_median = 0.0 if dist == "normal" else 1.0
    hits = 0
    for row in data:
        s = summarize(row)
        hits += s.ci_low <= true_median <= s.ci_high
    exact = median_ci_ranks(n, 0.95)[2]  # 0.957 for n = 30
    assert exact >= 0.95
    assert abs(hits / trials - exact) < 0.015  # ~3 binomial standard errors


# --------------------------------------------------------------------------- host_sampler


def test_host_sampler_waits_for_async_device() -> None:
    clock = FakeClock()
    queue = [0.0]  # seconds of work queued on the fake device

    def step() -> None:  # launches and returns at once: the clock does not move
        queue[0] += 0.002

    def sync() -> None:  # waits for the device: the clock moves by the queued work
        clock.advance(queue[0])
        queue[0] = 0.0

    sampler = host_sampler(step, sync, clock)
    assert sampler(5) == pytest.approx(0.010)
    queue[0] = 1.0  # work queued before the sample must not be counted
    assert sampler(3) == pytest.approx(0.006)
    # Without the synchronize the launch alone would be timed: nothing.
    assert host_sampler(step, lambda: None, clock)(5) == 0.0
    with pytest.raises(ValueError):
        sampler(0)


# --------------------------------------------------------------------------- measure


def test_warmup_respects_iteration_count() -> None:
    clock = FakeClock()
    op = FakeOp(clock, base=0.1)  # each iteration is longer than warmup_time
    cfg = TimingConfig(warmup_iters=3, warmup_time=0.01, max_time=2.0, min_samples=5)
    m = measure(op, cfg, clock)
    assert m.warmup_iters == 3
    assert m.warmup_seconds == pytest.approx(0.3)
    assert sum(op.calls[:2]) == 3  # warm-up batches 1 + 2


def test_warmup_respects_time() -> None:
    clock = FakeClock()
    op = FakeOp(clock, base=0.001, first=0.05)  # slow first call, then 1 ms
    cfg = TimingConfig(warmup_iters=3, warmup_time=0.2)
    m = measure(op, cfg, clock)
    assert m.warmup_seconds >= 0.2
    assert m.warmup_iters >= 3
    assert 150 <= m.warmup_iters <= 250  # 0.05 + 150 * 0.001 = 0.2: not much more
    assert m.warmup_seconds < 0.3


def test_no_warmup_when_disabled() -> None:
    clock = FakeClock()
    op = FakeOp(clock, base=0.001)
    m = measure(op, TimingConfig(warmup_iters=0, warmup_time=0), clock)
    assert m.warmup_iters == 0 and m.warmup_seconds == 0


@pytest.mark.parametrize("base", [1e-5, 1e-4, 7e-4, 3e-3, 0.02])
def test_calibration_makes_samples_long_enough(base: float) -> None:
    clock = FakeClock()
    op = FakeOp(clock, base=base, sigma=0.02, seed=3, first=base * 50)
    cfg = TimingConfig(min_sample_time=0.005, warmup_time=0.01, max_time=2.0)
    m = measure(op, cfg, clock)
    assert all(s * m.inner >= cfg.min_sample_time for s in m.samples)
    # ... and not needlessly long: about SAFETY * min_sample_time, or one iteration.
    assert m.inner == 1 or m.inner * base <= 1.2 * cfg.min_sample_time
    assert m.inner == 1 or m.inner * base >= SAFETY * cfg.min_sample_time * 0.95
    # Calibration starts from the warm-up's per-iteration time: one checking sample at most.
    before_sampling = op.calls[: len(op.calls) - len(m.samples)]
    warmup_calls = next(k for k in range(len(op.calls)) if sum(op.calls[:k]) == m.warmup_iters)
    assert len(before_sampling) - warmup_calls <= 1


def test_calibration_ignores_slow_first_call() -> None:
    clock = FakeClock()
    op = FakeOp(clock, base=1e-4, first=1.0)  # compilation: the only warm-up call is slow
    cfg = TimingConfig(warmup_iters=1, warmup_time=0.01)
    m = measure(op, cfg, clock)
    assert m.warmup_iters == 1
    assert 55 <= m.inner <= 56  # SAFETY * min_sample_time / 1e-4, not 1
    assert m.stats.median == pytest.approx(1e-4)


@pytest.mark.parametrize(("slow_calls", "decay"), [(3, False), (4, True)])
def test_calibration_rechecks_a_warmup_slow_throughout(slow_calls: int, decay: bool) -> None:
    """A fresh process's first calls were all slow (measured: a 0.2 ms conv took 70-96 ms
    per iteration through the whole quick warm-up): calibration must not take n = 1."""
    clock = FakeClock()
    op = FakeOp(clock, base=1e-4)
    slow = {"left": slow_calls}
    inner_step = op.step

    def step() -> None:
        if slow["left"]:
            slow["left"] -= 1
            clock.advance(0.08 / (slow_calls - slow["left"]) if decay else 0.08)  # 80 ms each, or 80, 40, 27, 20: settling
        else:
            inner_step()

    op.step = step  # type: ignore[method-assign]
    op._sample = host_sampler(op.step, lambda: None, clock)
    cfg = TimingConfig(warmup_time=0.05, min_samples=7, precision=0.05, max_time=1.5)
    m = measure(op, cfg, clock)
    assert m.warmup_iters == 3
    assert 55 <= m.inner <= 56  # SAFETY * min_sample_time / 1e-4, not 1
    assert m.stats.median == pytest.approx(1e-4)


def test_calibration_keeps_one_iteration_for_an_op_slower_than_min_sample_time() -> None:
    clock = FakeClock()
    op = FakeOp(clock, base=0.02)  # 20 ms: every iteration is a long enough sample
    cfg = TimingConfig(warmup_time=0.05, min_samples=7, precision=0.05, max_time=1.5)
    m = measure(op, cfg, clock)
    assert m.inner == 1
    # one recheck iteration beyond warm-up, none for an op slower than the cap (max_time / min_samples)
    assert sum(op.calls[: len(op.calls) - len(m.samples)]) == m.warmup_iters + 1
    slow = FakeOp(FakeClock(), base=0.5)
    m = measure(slow, cfg, slow.clock)
    assert m.inner == 1 and sum(slow.calls[: len(slow.calls) - len(m.samples)]) == m.warmup_iters


def test_low_noise_converges_at_min_samples() -> None:
    clock = FakeClock()
    op = FakeOp(clock, base=0.001, sigma=0.01, seed=5)
    cfg = TimingConfig(min_samples=12)
    m = measure(op, cfg, clock)
    assert isinstance(m, Measurement)
    assert m.converged
    assert len(m.samples) == cfg.min_samples == m.stats.n
    assert m.stats.rel_ci_halfwidth <= cfg.precision
    assert m.stats.median == pytest.approx(0.001, rel=0.01)
    assert m.stats.ci_low <= 0.001 <= m.stats.ci_high
    d = m.to_dict()
    assert "samples" not in d and d["stats"]["n"] == 12 and d["converged"] is True


def test_moderate_noise_needs_more_samples() -> None:
    clock = FakeClock()
    op = FakeOp(clock, base=0.001, sigma=0.5, seed=6)  # per-sample noise ~ 0.5 / sqrt(6)
    cfg = TimingConfig(min_samples=10, max_time=50.0)
    m = measure(op, cfg, clock)
    assert m.converged
    assert len(m.samples) > cfg.min_samples
    assert m.stats.rel_ci_halfwidth <= cfg.precision
    # Convergence was declared at the first sample that reached the precision.
    assert summarize(m.samples[:-1]).rel_ci_halfwidth > cfg.precision


def test_noisy_work_stops_at_max_time() -> None:
    clock = FakeClock()
    op = FakeOp(clock, base=0.001, sigma=1.5, seed=7)
    cfg = TimingConfig(precision=0.001, max_time=1.0)
    m = measure(op, cfg, clock)
    assert not m.converged
    assert cfg.min_samples < len(m.samples) < cfg.max_samples
    last_sample = m.samples[-1] * m.inner
    # It stopped on the first sample that crossed the budget.
    assert m.elapsed >= cfg.max_time > m.elapsed - last_sample


def test_noisy_work_stops_at_max_samples() -> None:
    clock = FakeClock()
    op = FakeOp(clock, base=0.001, sigma=1.5, seed=8)
    cfg = TimingConfig(precision=0.001, max_time=100.0, max_samples=40)
    m = measure(op, cfg, clock)
    assert not m.converged
    assert len(m.samples) == 40
    assert m.elapsed < cfg.max_time


def test_slow_op_ends_quickly_with_few_samples() -> None:
    clock = FakeClock()
    op = FakeOp(clock, base=6.0)  # each iteration longer than max_time
    cfg = TimingConfig(max_time=5.0)
    m = measure(op, cfg, clock)
    assert m.inner == 1
    # Samples end at 6 s and 12 s; a third would end at 18 s > 3 * max_time.
    assert len(m.samples) == 2
    assert m.elapsed <= HARD_LIMIT_FACTOR * cfg.max_time
    assert not m.converged
    assert m.stats.median == pytest.approx(6.0)
    # Nothing beyond warm-up (3 iterations) and these samples: no calibration sample.
    assert op.iterations == 3 + len(m.samples)
    assert clock.t == pytest.approx(6.0 * op.iterations)


def test_two_second_op_yields_three_samples() -> None:
    clock = FakeClock()
    op = FakeOp(clock, base=2.0, sigma=0.01, seed=9)
    m = measure(op, TimingConfig(max_time=5.0), clock)
    assert len(m.samples) == 3 and m.inner == 1
    assert m.elapsed == pytest.approx(6.0, rel=0.05)
    assert m.stats.median == pytest.approx(2.0, rel=0.05)


def test_slow_sample_capped_so_min_samples_fit() -> None:
    clock = FakeClock()
    # 0.3 s per iteration: inner must stay 1 so 10 samples fit in max_time = 5.
    op = FakeOp(clock, base=0.3, sigma=0.3, seed=10)
    cfg = TimingConfig(min_sample_time=0.2, max_time=5.0, precision=1e-4)
    m = measure(op, cfg, clock)
    assert m.inner == 1
    assert len(m.samples) >= cfg.min_samples


# --------------------------------------------------------------------------- interleaved


def _drift(t: float) -> float:
    return 1.0 + 2.0 * t  # the fake machine slows down steadily: x3 after one second


def _pair(clock: FakeClock) -> dict[str, FakeOp]:
    return {
        "base": FakeOp(clock, base=0.001, sigma=0.05, seed=11, drift=_drift),
        "slow": FakeOp(clock, base=0.0015, sigma=0.05, seed=12, drift=_drift),  # 1.5x
    }


DRIFT_CONFIG = TimingConfig(warmup_time=0.01, max_time=0.5)


def test_interleaved_ratio_survives_drift() -> None:
    clock = FakeClock()
    r = measure_interleaved(_pair(clock), DRIFT_CONFIG, baseline="base", clock=clock)
    assert isinstance(r, InterleavedMeasurement)
    rs = r.ratio_stats["slow"]
    assert rs.ci_low <= 1.5 <= rs.ci_high
    assert rs.median == pytest.approx(1.5, rel=0.01)
    assert rs.rel_ci_halfwidth <= DRIFT_CONFIG.precision  # the ratio is pinned down ...
    # ... while the absolute times moved with the drift, so their medians never converged
    # and the run ended on its budget (max_time per member).
    for m in r.members.values():
        assert m.stats.max / m.stats.min > 1.5
        assert m.stats.rel_ci_halfwidth > DRIFT_CONFIG.precision and not m.converged
    assert r.members["base"].stats.median > 1.3 * 0.001
    assert not r.converged and r.elapsed >= 2 * DRIFT_CONFIG.max_time
    # The ratios are those of the same rounds.
    b, s = r.members["base"].samples, r.members["slow"].samples
    assert r.ratios["slow"] == pytest.approx([y / x for x, y in zip(b, s, strict=True)])
    assert len(b) == len(s) == r.rounds == len(r.ratios["slow"])
    assert "base" not in r.ratios
    d = r.to_dict()
    assert set(d["members"]) == {"base", "slow"} and set(d["ratio_stats"]) == {"slow"}


def test_sequential_measurement_is_fooled_by_drift() -> None:
    """The contrast: timed one after the other, the drift distorts the ratio."""
    clock = FakeClock()
    pair = _pair(clock)
    a = measure(pair["base"], DRIFT_CONFIG, clock)
    b = measure(pair["slow"], DRIFT_CONFIG, clock)
    assert b.stats.median / a.stats.median > 1.5 * 1.2


def test_interleaved_converges_without_drift() -> None:
    clock = FakeClock()
    ops = {
        "base": FakeOp(clock, base=0.001, sigma=0.02, seed=1),
        "slow": FakeOp(clock, base=0.0015, sigma=0.02, seed=2),
    }
    cfg = TimingConfig(warmup_time=0.01)
    r = measure_interleaved(ops, cfg, baseline="base", clock=clock)
    assert r.converged and r.rounds == cfg.min_samples
    assert all(m.converged for m in r.members.values())
    rs = r.ratio_stats["slow"]
    assert rs.ci_low <= 1.5 <= rs.ci_high and rs.median == pytest.approx(1.5, rel=0.02)


def test_interleaved_order_is_shuffled() -> None:
    clock = FakeClock()
    ops = {k: FakeOp(clock, base=0.001 * (i + 1), sigma=0.2, seed=i) for i, k in enumerate("abc")}
    cfg = TimingConfig(min_samples=60, warmup_time=0.01, precision=1e-4, max_samples=60)
    r = measure_interleaved(ops, cfg, baseline="a", clock=clock, seed=123)
    assert r.rounds == 60 and not r.converged
    assert all(sorted(o) == ["a", "b", "c"] for o in r.orders)
    firsts = {o[0] for o in r.orders}
    assert firsts == {"a", "b", "c"}  # no member always goes first
    assert {tuple(o) for o in r.orders} == set(permutations("abc"))
    # Seeded: the same seed gives the same orders, another seed other orders.
    again = measure_interleaved(ops, cfg, baseline="a", clock=clock, seed=123)
    other = measure_interleaved(ops, cfg, baseline="a", clock=clock, seed=124)
    assert again.orders == r.orders != other.orders
    assert set(r.ratio_stats) == {"b", "c"}


def test_interleaved_stops_at_budget() -> None:
    clock = FakeClock()
    ops = {"a": FakeOp(clock, 0.001, 1.5, 1), "b": FakeOp(clock, 0.002, 1.5, 2)}
    cfg = TimingConfig(precision=1e-4, max_time=0.5, warmup_time=0.01)
    r = measure_interleaved(ops, cfg, baseline="a", clock=clock)
    assert not r.converged
    budget = cfg.max_time * 2
    last_round = sum(r.members[k].samples[-1] * r.members[k].inner for k in ops)
    assert r.elapsed >= budget > r.elapsed - last_round
    assert r.rounds >= cfg.min_samples
    assert r.elapsed == pytest.approx(sum(m.elapsed for m in r.members.values()))


def test_interleaved_rejects_unknown_baseline() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError):
        measure_interleaved({"a": FakeOp(clock, 0.001)}, TimingConfig(), "b", clock=clock)


def test_stats_is_a_dataclass_with_expected_fields() -> None:
    fields = set(Stats.__dataclass_fields__)
    assert {
        "n",
        "median",
        "q1",
        "q3",
        "iqr",
        "ci_low",
        "ci_high",
        "mean",
        "stdev",
        "min",
        "max",
    } <= fields


class _OverheadOp:
    """Identical work with a fixed cost per sample (a sync, a message): ``n`` iterations
    take ``overhead + n * per`` seconds."""

    def __init__(self, clock: FakeClock, per: float, overhead: float) -> None:
        self.clock, self.per, self.overhead = clock, per, overhead

    def __call__(self, n: int) -> float:
        dt = self.overhead + n * self.per
        self.clock.advance(dt)
        return dt


def test_same_inner_gives_paired_members_the_larger_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    import convbench.timing as timing

    clock = FakeClock()
    ops = {"base": _OverheadOp(clock, 1e-3, 1e-3), "new": _OverheadOp(clock, 1e-3, 1e-3)}
    # calibrated apart under different load: the same work got 7 and 3 iterations per sample
    inners = {id(ops["base"]): 7, id(ops["new"]): 3}
    monkeypatch.setattr(timing, "_calibrate", lambda sampler, config, hint: inners[id(sampler)])
    cfg = TimingConfig(warmup_time=0.01, max_samples=40)
    skewed = measure_interleaved(ops, cfg, "base", clock=clock)
    assert (skewed.members["base"].inner, skewed.members["new"].inner) == (7, 3)
    assert skewed.ratio_stats["new"].median == pytest.approx((1 + 1 / 3) / (1 + 1 / 7))  # an A/A pair reads 17% slower
    fair = measure_interleaved(ops, cfg, "base", clock=clock, same_inner=True)
    assert fair.members["base"].inner == fair.members["new"].inner == 7
    assert fair.ratio_stats["new"].median == pytest.approx(1.0)
