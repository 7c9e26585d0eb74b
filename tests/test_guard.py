"""Tests of the quiet guard (Guard in measure() and measure_interleaved()) on a fake /proc.

A :class:`BusySampler` runs on a :class:`~tests.test_contention.FakeProc`: each call lets
fake time pass with the timed process on one core and, on chosen calls, a neighbour on
another; the guard's Monitor reads that fake /proc with the same fake clock.
"""

from __future__ import annotations

from collections.abc import Container
from pathlib import Path

import pytest

from convbench.contention import QUIET_WINDOW, Monitor
from convbench.timing import (
    Guard,
    SamplerError,
    TimingConfig,
    measure,
    measure_interleaved,
)
from tests.test_contention import FakeProc
from tests.test_timing import FakeClock

BUSY = "other processes used 1.00 cores; tasks waited for a CPU 0% of the time"
QUIET = "other processes used 0.00 cores; tasks waited for a CPU 0% of the time"


class BusySampler:
    """``n`` iterations of ``per`` seconds each, the timed process on one core.

    Calls (0-based, calibration included) in ``busy`` share the machine with a neighbour
    on ``cores`` cores and last ``slow`` times longer; other calls see
    ``proc.neighbour``. Call ``fail_at`` raises :class:`SamplerError`.
    """

    def __init__(
        self,
        proc: FakeProc,
        per: float,
        busy: Container[int] = (),
        slow: float = 1.0,
        cores: float = 1.0,
        fail_at: int | None = None,
    ) -> None:
        self.proc, self.per, self.busy, self.slow, self.cores = proc, per, busy, slow, cores
        self.fail_at = fail_at
        self.calls = 0

    def __call__(self, n: int) -> float:
        k = self.calls
        self.calls += 1
        if k == self.fail_at:
            raise SamplerError("worker died")
        busy = k in self.busy
        dt = n * self.per * (self.slow if busy else 1.0)
        self.proc.run(dt, own=1.0, other=self.cores if busy else None)
        return dt


def _setup(tmp_path: Path) -> tuple[FakeClock, FakeProc, Monitor]:
    clock = FakeClock()
    proc = FakeProc(tmp_path, clock)
    return clock, proc, proc.monitor()


def _config(**kw: float) -> TimingConfig:
    # No warm-up: call 0 is the calibration sample, sample i is call i + 1 (inner = 1).
    base = {
        "warmup_iters": 0,
        "warmup_time": 0.0,
        "min_samples": 10,
        "max_time": 10.0,
        "quiet_wait": 5.0,
    }
    return TimingConfig(**{**base, **kw})


# --------------------------------------------------------------------------- measure, wait


def test_wait_drops_and_retakes_contended_samples(tmp_path: Path) -> None:
    clock, proc, mon = _setup(tmp_path)
    op = BusySampler(proc, 0.25, busy={3, 6}, slow=10.0)  # samples 2 and 5: 10x slower, busy
    cfg = _config()
    guard = Guard.for_case(mon, cfg.model_copy(update={"guard": "wait"}), "cuda")
    assert guard.mode == "wait"
    m = measure(op, cfg, clock, guard)
    assert m.inner == 1
    assert m.samples == [0.25, 0.25, 2.5, 0.25, 0.25, 2.5] + [0.25] * 6
    assert m.kept == [True, True, False, True, True, False] + [True] * 6
    assert m.reasons == [None, None, BUSY, None, None, BUSY] + [None] * 6
    assert op.calls == 1 + 12  # calibration, ten clean samples and two retaken
    # Statistics over the kept samples only: the slow ones do not move them.
    assert (m.stats.n, m.stats.median, m.stats.mean, m.stats.max) == (10, 0.25, 0.25, 0.25)
    assert m.converged is True
    assert (m.contended, m.contention, m.dropped) == (False, None, 2)
    assert m.loads[2] is not None and m.loads[2].foreign_cpu == pytest.approx(1.0)
    assert m.loads[2].own_cpu == pytest.approx(1.0)
    assert m.loads[3] is not None and m.loads[3].foreign_cpu == 0.0  # no leak into the next
    assert m.load is not None and m.load.foreign_cpu == 0.0 and m.load.wall == pytest.approx(2.5)
    # One quiet window before the group, one after each contended sample.
    assert proc.sleeps == [QUIET_WINDOW] * 3
    assert m.quiet_waited == pytest.approx(3 * QUIET_WINDOW)  # before the group, and after each dropped sample
    assert guard.budget.waited == pytest.approx(3 * QUIET_WINDOW)
    assert m.elapsed == pytest.approx(10 * 0.25 + 2 * 2.5)  # waits left out
    assert clock.t == pytest.approx(0.25 + 3 * QUIET_WINDOW + m.elapsed)
    assert m.to_dict()["contended"] is False and m.to_dict()["dropped"] == 2


def test_wait_retakes_a_blip_at_once(tmp_path: Path) -> None:
    """A sample in which a task waited for a CPU 10% of the time while nothing else ran
    (the machine's own kernel threads, on an idle VM) is dropped and retaken without
    waiting for a quiet window; a neighbour's sample still waits for one."""
    clock, proc, mon = _setup(tmp_path)
    calls = []

    def sampler(n: int) -> float:
        k = len(calls)
        calls.append(k)
        proc.run(0.25 * n, own=1.0, other=1.0 if k == 6 else 0.0, stall=0.1 if k in (3, 4) else 0.0)
        return 0.25 * n

    cfg = _config()
    m = measure(sampler, cfg, clock, Guard(mon, "wait", cfg.quiet_wait))
    assert m.kept == [True, True, False, False, True, False] + [True] * 7
    assert "waited for a CPU 10%" in m.reasons[2] and "used 1.00 cores" in m.reasons[5]
    assert proc.sleeps == [QUIET_WINDOW] * 2  # before the group, and after the neighbour only
    assert (m.dropped, m.contended, m.stats.n) == (3, False, 10)


def test_wait_too_few_clean_samples_is_contended(tmp_path: Path) -> None:
    clock, proc, mon = _setup(tmp_path)
    op = BusySampler(proc, 0.25, busy={1, 3, 5, 7, 9})  # every other sample, from the first
    cfg = _config(max_time=1.0, quiet_wait=100.0)
    m = measure(op, cfg, clock, Guard(mon, "wait", cfg.quiet_wait))
    # Stops once max_time is spent and 3 clean samples exist: six taken.
    assert m.samples == [0.25] * 6
    assert m.kept == [False, True] * 3
    assert m.reasons == [BUSY, None] * 3
    assert m.stats.n == 3 and m.dropped == 3
    assert m.converged is False and m.contended is True
    assert m.contention == f"only 3 clean samples of 10 wanted (3 dropped as contended): {QUIET}"
    # one quiet window before the group, one after each dropped sample
    assert proc.sleeps == [QUIET_WINDOW] * 4 and m.quiet_waited == pytest.approx(1.0)


def test_wait_busy_throughout_keeps_flagged_samples_once_the_budget_is_spent(tmp_path: Path) -> None:
    clock, proc, mon = _setup(tmp_path)
    proc.neighbour = lambda t: 1.0  # a neighbour that never stops, sleeping or sampling
    op = BusySampler(proc, 0.25)
    cfg = _config(max_time=1.0, quiet_wait=1.0)
    guard = Guard(mon, "wait", cfg.quiet_wait)
    m = measure(op, cfg, clock, guard)
    # The whole quiet budget goes before the group; then retaking would only buy more
    # contended samples: they are kept, flagged, and sampling ends at max_time.
    assert proc.sleeps == [QUIET_WINDOW] * 4 and guard.budget.left == 0.0
    assert m.samples == [0.25] * 4 and m.kept == [True] * 4 and m.reasons == [BUSY] * 4
    assert m.stats.n == 4 and m.stats.median == 0.25 and m.dropped == 0
    assert m.converged is False and m.contended is True
    assert m.contention == f"4 of 4 samples used were contended (0 dropped): {BUSY}"
    assert m.elapsed == pytest.approx(cfg.max_time) and m.quiet_waited == pytest.approx(1.0)
    assert clock.t == pytest.approx(0.25 + 1.0 + 1.0)  # calibration, quiet budget, max_time


def test_wait_neighbour_only_while_sampling_ends_bounded(tmp_path: Path) -> None:
    clock, proc, mon = _setup(tmp_path)
    op = BusySampler(proc, 0.25, busy=range(1, 10**6))  # quiet between samples, busy in them
    cfg = _config(max_time=1.0, quiet_wait=1.0)
    guard = Guard(mon, "wait", cfg.quiet_wait)
    m = measure(op, cfg, clock, guard)
    # Quiet at once before the group; three retakes wait a window each, then the budget
    # is spent and the next samples are kept, flagged, until max_time.
    assert proc.sleeps == [QUIET_WINDOW] * 4
    assert m.quiet_waited == pytest.approx(1.0) and guard.budget.waited == pytest.approx(1.0)
    assert m.kept == [False] * 3 + [True] * 3 and m.reasons == [BUSY] * 6 and m.contended is True
    assert m.contention == f"3 of 3 samples used were contended (3 dropped): {BUSY}"
    assert m.elapsed == pytest.approx(1.5)
    # Bounded: calibration + quiet_wait + the time budget (3 clean-or-kept samples).
    assert clock.t == pytest.approx(0.25 + cfg.quiet_wait + 1.5)


# --------------------------------------------------------------------------- measure, flag / off


@pytest.mark.parametrize(
    ("busy", "slow", "contended", "reason"),
    [
        ({3}, 1.0, False, None),  # 1 of 10: not more than 10%, mean 0.1 cores
        ({3, 6}, 1.0, True, "2 of 10 samples used were contended (0 dropped): "
         "other processes used 0.20 cores; tasks waited for a CPU 0% of the time"),
        # 1 of 10, but 10x longer: the wall-weighted mean load is contended (2.5 / 4.75 s).
        ({3}, 10.0, True, "contended while timed: "
         "other processes used 0.53 cores; tasks waited for a CPU 0% of the time"),
    ],
)  # fmt: skip
def test_flag_keeps_samples_and_flags(
    tmp_path: Path, busy: set[int], slow: float, contended: bool, reason: str | None
) -> None:
    clock, proc, mon = _setup(tmp_path)
    op = BusySampler(proc, 0.25, busy=busy, slow=slow)
    guard = Guard(mon, "flag", quiet_wait=5.0)
    m = measure(op, _config(), clock, guard)
    assert len(m.samples) == 10 and m.kept == [True] * 10
    assert [i for i, r in enumerate(m.reasons) if r is not None] == sorted(k - 1 for k in busy)
    assert m.stats.n == 10 and m.stats.max == 0.25 * slow
    assert (m.contended, m.contention, m.dropped) == (contended, reason, 0)
    assert proc.sleeps == [] and guard.budget.seconds == 0.0  # flag never waits


def test_off_records_loads_but_judges_nothing(tmp_path: Path) -> None:
    clock, proc, mon = _setup(tmp_path)
    op = BusySampler(proc, 0.25, busy={3, 4, 5}, slow=10.0)
    m = measure(op, _config(), clock, Guard(mon, "off", quiet_wait=5.0))
    assert (m.contended, m.contention) == (None, None)
    assert m.reasons == [None] * len(m.samples) and all(m.kept)
    assert [x.foreign_cpu for x in m.loads if x is not None][:5] == pytest.approx([0, 0, 1, 1, 1])
    assert m.stats.max == 2.5 and proc.sleeps == []
    # Without a monitor nothing is recorded at all.
    bare = measure(BusySampler(proc, 0.25), _config(), clock)
    assert bare.contended is None and bare.loads == [None] * 10 and bare.load is None


def test_guard_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError):
        Guard(None, "always")
    assert TimingConfig().guard_for("cpu") == "wait" and TimingConfig().guard_for("cuda") == "flag"


# --------------------------------------------------------------------------- interleaved


def test_interleaved_drops_whole_rounds(tmp_path: Path) -> None:
    clock, proc, mon = _setup(tmp_path)
    ops = {
        "base": BusySampler(proc, 0.25, busy={6}, slow=10.0),  # round 5
        "other": BusySampler(proc, 0.5, busy={3}, slow=10.0),  # round 2
    }
    cfg = _config()
    guard = Guard(mon, "wait", cfg.quiet_wait)
    r = measure_interleaved(ops, cfg, "base", clock, guard=guard)
    assert r.rounds == 12 and len(r.orders) == 12 and r.converged
    kept = [True, True, False, True, True, False] + [True] * 6
    assert r.ratios["other"] == pytest.approx([2.0, 2.0, 20.0, 2.0, 2.0, 0.2] + [2.0] * 6)
    rs = r.ratio_stats["other"]
    assert (rs.n, rs.median, rs.min, rs.max) == (10, 2.0, 2.0, 2.0)
    base, other = r.members["base"], r.members["other"]
    assert base.samples == [0.25] * 5 + [2.5] + [0.25] * 6
    assert other.samples == [0.5, 0.5, 5.0] + [0.5] * 9
    for m, median in ((base, 0.25), (other, 0.5)):
        assert m.kept == kept  # both members' samples of a round go together
        assert (m.stats.n, m.stats.median, m.stats.max) == (10, median, median)
        assert (m.contended, m.contention, m.dropped) == (False, None, 2)
        assert m.quiet_waited == pytest.approx(0.75)  # one window before the group, one per dropped sample
    # Each contended round is judged as a whole (5.0 busy s of 5.25, 2.5 of 3.0).
    assert (
        base.reasons[2] == "other processes used 0.95 cores; tasks waited for a CPU 0% of the time"
    )
    assert (
        base.reasons[5] == "other processes used 0.83 cores; tasks waited for a CPU 0% of the time"
    )
    assert [i for i, x in enumerate(base.reasons) if x] == [2, 5]
    assert r.elapsed == pytest.approx(10 * 0.75 + 5.25 + 3.0)
    assert r.failed == {}


def test_interleaved_sampler_error_keeps_complete_rounds(tmp_path: Path) -> None:
    clock, proc, mon = _setup(tmp_path)
    ops = {
        "base": BusySampler(proc, 0.25, busy={2}),  # round 1 contended
        "other": BusySampler(proc, 0.5, fail_at=5),  # dies in round 4 (call 0 calibrates)
    }
    cfg = _config()
    r = measure_interleaved(ops, cfg, "base", clock, guard=Guard(mon, "wait", cfg.quiet_wait))
    assert r.failed == {"other": "worker died"}
    assert r.rounds == 4 and len(r.orders) == 4 and not r.converged
    for m in r.members.values():
        assert len(m.samples) == 4 and m.kept == [True, False, True, True]
        assert m.stats.n == 3 and m.dropped == 1 and m.contended is True
        assert (
            m.contention == f"only 3 clean samples of 10 wanted (1 dropped as contended): {QUIET}"
        )
    assert r.members["base"].samples == [0.25] * 4
    assert r.ratios["other"] == pytest.approx([2.0] * 4)
    assert r.ratio_stats["other"].n == 3
    assert ops["other"].calls == 6


def test_interleaved_sampler_error_in_first_round(tmp_path: Path) -> None:
    clock, proc, mon = _setup(tmp_path)
    ops = {"base": BusySampler(proc, 0.25, fail_at=1), "other": BusySampler(proc, 0.5)}
    cfg = _config()
    r = measure_interleaved(ops, cfg, "base", clock, guard=Guard(mon, "wait", cfg.quiet_wait))
    assert r.failed == {"base": "worker died"}
    assert (r.rounds, r.members, r.ratio_stats, r.converged) == (0, {}, {}, False)
