"""Tests of the contention telemetry on recorded /proc texts and a fake /proc tree.

No real /proc, no real sleeping: a :class:`FakeProc` writes the counter files under a
temporary folder and moves them with a fake clock (reused by tests/test_guard.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from convbench.contention import (
    MIN_WINDOW,
    QUIET_WINDOW,
    ContentionRule,
    Load,
    Monitor,
    QuietBudget,
    Reader,
    Snapshot,
    load_between,
    mean_load,
    parse_pid_stat,
    parse_pressure,
    parse_proc_stat,
)
from tests.test_timing import FakeClock

#: Clock ticks per second as the Reader reads them (100 on Linux).
TCK = int(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100
#: The fake timed process.
PID = 4242

# --------------------------------------------------------------------------- recorded texts

PROC_STAT = """\
cpu  10132153 290696 3084719 46828483 16683 1200 25195 1234 175628 0
cpu0 5066076 145348 1542359 23414241 8341 600 12597 617 87814 0
cpu1 5066077 145348 1542360 23414242 8342 600 12598 617 87814 0
intr 199292222 0 9 0 0 0 0 0 0 1 161 0 0 2398 0 0 0 31 0 0 0 0 0 0 0
ctxt 38014093
btime 1706000000
processes 26442
procs_running 3
procs_blocked 1
softirq 17352513 14 4113637 12 1244098 5 0 81907 5902281 2 6010557
"""

PRESSURE_CPU = """\
some avg10=1.23 avg60=0.87 avg300=0.45 total=123456789
full avg10=0.00 avg60=0.00 avg300=0.00 total=0
"""

# A command name with spaces and ')' (the kernel keeps it as set by prctl), then
# state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime=1500
# stime=250 cutime=7000 cstime=9000 (children's time: not counted) ...
PID_STAT = (
    "4242 (py worker) (x) :)) S 1 4242 4242 34816 4242 4194560 12345 0 7 0 1500 250 7000 9000 "
    "20 0 4 0 123456 1234567890 5000 18446744073709551615 1 1 0 0 0 0 0 16781312 134234626 0 0 0 17 "
    "1 0 0 0 0 0\n"
)


def test_parse_proc_stat_recorded() -> None:
    busy, steal, running = parse_proc_stat(PROC_STAT)
    # user + nice + system + irq + softirq of the aggregate line (not idle, iowait, guest).
    assert busy == pytest.approx((10132153 + 290696 + 3084719 + 1200 + 25195) / 100)
    assert steal == pytest.approx(12.34)
    assert running == 3


def test_parse_proc_stat_ticks_short_lines_and_missing() -> None:
    busy, steal, running = parse_proc_stat("cpu  100 20 50 1000\ncpu0 100 20 50 1000\n", 250.0)
    assert (busy, steal, running) == (pytest.approx(170 / 250), 0.0, None)  # old 4-field line
    with pytest.raises(ValueError):
        parse_proc_stat("cpu0 1 2 3 4 5 6 7 8\nprocs_running 2\n")  # per-CPU lines only


def test_parse_pressure_recorded() -> None:
    assert parse_pressure(PRESSURE_CPU) == pytest.approx(123.456789)
    # The "some" line counts whatever its position.
    assert parse_pressure("full avg10=0.00 total=5\nsome avg10=0.00 total=2000000\n") == 2.0
    with pytest.raises(ValueError):
        parse_pressure("full avg10=0.00 avg60=0.00 avg300=0.00 total=99\n")
    with pytest.raises(ValueError):
        parse_pressure("")


def test_parse_pid_stat_name_with_spaces_and_parens() -> None:
    assert parse_pid_stat(PID_STAT) == pytest.approx(17.5)  # (1500 + 250) / 100
    assert parse_pid_stat(PID_STAT, 50.0) == pytest.approx(35.0)
    plain = "17 (sh) R 1 17 17 0 -1 4194304 90 0 0 0 3 4 0 0 20 0 1 0 1 1 1 1 1 1 1\n"
    assert parse_pid_stat(plain) == pytest.approx(0.07)


# --------------------------------------------------------------------------- fake /proc


class FakeProc:
    """A fake /proc (``root``) and /sys (``root/"sys"``) moved by a fake clock.

    Counters are kept in clock ticks (``/proc/stat`` and ``/proc/PID/stat``) and
    microseconds (PSI); :meth:`run` lets time pass with given loads and rewrites the
    files. ``neighbour(t)`` gives the cores other processes use at time ``t`` when
    :meth:`run` is not told; :meth:`sleep` is a Monitor's sleep.
    """

    def __init__(
        self,
        root: Path,
        clock: FakeClock,
        cpus: int = 2,
        pressure: bool = True,
        freq_khz: list[int] | None = None,
    ) -> None:
        self.root, self.clock, self.cpus = Path(root), clock, cpus
        self.own = 10_000  # ticks of the timed process (it ran before the test)
        self.other = 500_000  # busy ticks of everything else
        self.steal = 300
        self.idle = 4_000_000
        self.stall_us = 77_000_000
        self.running = 1  # procs_running: the timed process itself
        self.neighbour: Callable[[float], float] = lambda t: 0.0
        self.sleeps: list[float] = []
        self.pressure = pressure
        (self.root / str(PID)).mkdir(parents=True, exist_ok=True)
        if pressure:
            (self.root / "pressure").mkdir(exist_ok=True)
        for i, khz in enumerate(freq_khz or []):
            d = self.root / "sys" / "devices" / "system" / "cpu" / f"cpu{i}" / "cpufreq"
            d.mkdir(parents=True, exist_ok=True)
            (d / "scaling_cur_freq").write_text(f"{khz}\n")
        self.write()

    def run(
        self,
        dt: float,
        own: float = 0.0,
        other: float | None = None,
        steal: float = 0.0,
        stall: float = 0.0,
    ) -> None:
        """``dt`` seconds pass: the timed process uses ``own`` cores, other work ``other``
        (default ``neighbour(now)``), the hypervisor steals ``steal`` cores, and some task
        waits for a CPU ``stall`` of the time."""
        if other is None:
            other = self.neighbour(self.clock.t)
        own_t, other_t, steal_t = (round(dt * x * TCK) for x in (own, other, steal))
        self.own += own_t
        self.other += other_t
        self.steal += steal_t
        self.idle += max(0, round(dt * self.cpus * TCK) - own_t - other_t - steal_t)
        self.stall_us += round(dt * stall * 1e6)
        self.clock.advance(dt)
        self.write()

    def sleep(self, dt: float) -> None:
        self.sleeps.append(dt)
        self.run(dt)

    def write(self) -> None:
        busy = self.own + self.other
        system = busy // 4
        fields = [busy - system, 0, system, self.idle, 0, 0, 0, self.steal, 0, 0]
        lines = ["cpu  " + " ".join(map(str, fields))]
        for c in range(self.cpus):
            share = [v // self.cpus + (c < v % self.cpus) for v in fields]
            lines.append(f"cpu{c} " + " ".join(map(str, share)))
        lines += [
            "intr 1000 0 9 0",
            "ctxt 38014093",
            "btime 1706000000",
            "processes 26442",
            f"procs_running {self.running}",
            "procs_blocked 0",
        ]
        (self.root / "stat").write_text("\n".join(lines) + "\n")
        stime = self.own // 5
        (self.root / str(PID) / "stat").write_text(
            f"{PID} (bench (w) 1)) R 1 {PID} {PID} 0 -1 4194304 90 0 0 0 {self.own - stime} {stime} "
            "55 66 20 0 1 0 1 1 1 1 1 1 1\n"
        )
        if self.pressure:
            (self.root / "pressure" / "cpu").write_text(
                f"some avg10=0.00 avg60=0.00 avg300=0.00 total={self.stall_us}\n"
                "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
            )

    def reader(self, pids: list[int] | None = None) -> Reader:
        return Reader(
            pids=[PID] if pids is None else pids,
            proc=self.root,
            sys=self.root / "sys",
            clock=self.clock,
        )

    def monitor(self, rule: ContentionRule | None = None) -> Monitor:
        return Monitor(self.reader(), rule, sleep=self.sleep)


def _machine(tmp_path: Path, **kw: object) -> tuple[FakeClock, FakeProc]:
    clock = FakeClock()
    return clock, FakeProc(tmp_path, clock, **kw)  # type: ignore[arg-type]


def test_reader_snapshot_of_fake_proc(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path, freq_khz=[2400000, 3000000])
    clock.advance(12.5)
    proc.running = 4
    proc.write()
    s = proc.reader().snapshot()
    assert s.t == 12.5
    assert s.own_cpu == pytest.approx(10_000 / TCK)
    assert s.busy == pytest.approx(510_000 / TCK)
    assert s.steal == pytest.approx(300 / TCK)
    assert s.pressure == pytest.approx(77.0)
    assert s.runnable == 3  # this process excepted
    assert s.freq_mhz == pytest.approx(2700.0)


def test_load_between_exact(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path, freq_khz=[2400000, 3000000])
    reader = proc.reader()
    a = reader.snapshot()
    proc.running = 3
    proc.run(0.5, own=1.0, other=0.6, steal=0.1, stall=0.2)
    b = reader.snapshot()
    load = load_between(a, b)
    assert load.to_dict() == pytest.approx(
        {
            "wall": 0.5,
            "own_cpu": 1.0,
            "foreign_cpu": 0.6,
            "steal": 0.1,
            "cpu_pressure": 0.2,
            "runnable": 2,
            "freq_mhz": 2700.0,
            "speed_compute": None,  # no probe: convbench.speed_probe, tests/test_speed_probe.py
            "speed_memory": None,
        }
    )
    assert load.describe() == (
        "other processes used 0.60 cores; the hypervisor stole 0.10 cores; tasks waited for a CPU 20% of the time"
    )
    # An idle interval: only this process ran, nothing foreign.
    proc.running = 1
    proc.run(0.25, own=1.0)
    c = reader.snapshot()
    quiet = load_between(b, c)
    assert (quiet.foreign_cpu, quiet.steal, quiet.cpu_pressure, quiet.runnable) == (
        0.0,
        0.0,
        0.0,
        0,
    )
    assert quiet.own_cpu == pytest.approx(1.0)


def test_load_between_with_window_and_empty_interval(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path)
    reader = proc.reader()
    w = reader.snapshot()
    proc.run(0.3, own=0.0, other=2.0)  # a neighbour on both CPUs, before the interval
    a = reader.snapshot()
    proc.run(0.1, own=1.0, other=0.0, stall=0.5)
    b = reader.snapshot()
    load = load_between(a, b, window=w)
    # Tick counters over w..b (0.4 s, 60 foreign ticks); pressure and own CPU over a..b.
    assert load.foreign_cpu == pytest.approx(1.5)
    assert load.own_cpu == pytest.approx(1.0)
    assert load.cpu_pressure == pytest.approx(0.5)
    assert load.wall == pytest.approx(0.1)
    assert load_between(b, b) == Load(wall=0.0, own_cpu=0.0)
    assert load_between(b, a) == Load(wall=0.0, own_cpu=0.0)


def test_own_cpu_sums_pids_and_skips_missing(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path)
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "stat").write_text(PID_STAT)  # 17.5 s
    (tmp_path / "78").mkdir()
    (tmp_path / "78" / "stat").write_text("garbage")  # unparsable: adds nothing
    reader = proc.reader(pids=[PID, 77, 78, 99999])  # 99999: exited
    assert reader.own_cpu() == pytest.approx(10_000 / TCK + 17.5)


def test_exited_pid_keeps_its_last_cpu_total(tmp_path: Path) -> None:
    """A timed pid that exits between snapshots keeps the CPU total last read: its
    lifetime CPU is not taken out of own_cpu (which once read as 201 foreign cores); only
    what it used after the last read, unreadable now, counts as foreign."""
    clock, proc = _machine(tmp_path)
    reader = proc.reader()
    a = reader.snapshot()
    proc.run(0.5, own=1.0)
    (tmp_path / str(PID) / "stat").unlink()  # the timed worker exits
    b = reader.snapshot()
    load = load_between(a, b)
    assert load.own_cpu == pytest.approx(0.0)
    assert load.foreign_cpu == pytest.approx(1.0)


def test_freq_unknown_without_cpufreq(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path)
    reader = proc.reader()
    assert reader.freq_files == []
    a = reader.snapshot()
    proc.run(0.5, own=1.0)
    b = reader.snapshot()
    assert a.freq_mhz is None and load_between(a, b).freq_mhz is None


def test_freq_skips_unreadable_files(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path, freq_khz=[1800000, 2200000, 3000000])
    bad = tmp_path / "sys" / "devices" / "system" / "cpu" / "cpu2" / "cpufreq" / "scaling_cur_freq"
    bad.write_text("")  # a CPU going offline
    assert proc.reader().freq() == pytest.approx(2000.0)


def test_missing_pressure_is_none(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path, pressure=False)
    reader = proc.reader()
    assert reader.has_pressure is False
    a = reader.snapshot()
    proc.run(0.5, own=1.0, other=0.5)
    b = reader.snapshot()
    load = load_between(a, b)
    assert a.pressure is None and load.cpu_pressure is None
    assert load.foreign_cpu == pytest.approx(0.5)
    assert load.describe() == "other processes used 0.50 cores"


def test_unsupported_pressure_file_is_none(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path, pressure=False)
    (tmp_path / "pressure").mkdir()
    (tmp_path / "pressure" / "cpu").write_text("")  # psi=0: the file exists, reads nothing
    reader = proc.reader()
    assert reader.has_pressure is False and reader.snapshot().pressure is None


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("load", "contended"),
    [
        (Load(1.0, 1.0, foreign_cpu=0.24, steal=0.0, cpu_pressure=0.0), False),
        (Load(1.0, 1.0, foreign_cpu=0.25, steal=0.0, cpu_pressure=0.0), True),
        (Load(1.0, 1.0, foreign_cpu=0.0, steal=0.24, cpu_pressure=0.0), False),
        (Load(1.0, 1.0, foreign_cpu=0.0, steal=0.25, cpu_pressure=0.0), True),
        (Load(1.0, 1.0, foreign_cpu=0.15, steal=0.1, cpu_pressure=0.0), True),  # summed
        (Load(1.0, 1.0, foreign_cpu=0.14, steal=0.1, cpu_pressure=0.0), False),
        (Load(1.0, 1.0, foreign_cpu=0.0, steal=0.0, cpu_pressure=0.049), False),
        (Load(1.0, 1.0, foreign_cpu=0.0, steal=0.0, cpu_pressure=0.05), True),
        (Load(1.0, 1.0), False),  # nothing known: not contended
        (Load(1.0, 1.0, cpu_pressure=0.5), True),
    ],
)
def test_rule_default_thresholds(load: Load, contended: bool) -> None:
    reason = ContentionRule().reason(load)
    assert (reason is not None) == contended
    if contended:
        assert reason == load.describe()


def test_rule_custom_thresholds_and_reason_text() -> None:
    rule = ContentionRule(cores=1.0, pressure=0.5)
    assert rule.reason(Load(1.0, 1.0, foreign_cpu=0.99, cpu_pressure=0.49)) is None
    assert rule.reason(Load(1.0, 1.0, foreign_cpu=1.0, cpu_pressure=0.0)) == (
        "other processes used 1.00 cores; tasks waited for a CPU 0% of the time"
    )
    assert rule.reason(Load(1.0, 1.0, foreign_cpu=0.0, steal=0.0, cpu_pressure=0.5)) == (
        "other processes used 0.00 cores; tasks waited for a CPU 50% of the time"
    )
    assert Load(1.0, 0.0).describe() == "no telemetry"


# --------------------------------------------------------------------------- Monitor.load


def test_monitor_load_window_reaches_back_min_window(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path)
    mon = proc.monitor()
    s0 = mon.mark()  # t = 0
    proc.run(0.05, other=2.0)  # 10 foreign ticks
    s1 = mon.mark()  # t = 0.05
    proc.run(0.03, other=0.0)
    s2 = mon.mark()  # t = 0.08
    proc.run(0.04, own=1.0, other=1.0)  # 4 foreign ticks, 4 own ticks
    end = mon.mark()  # t = 0.12
    # s2..end is 0.04 s and s1..end 0.07 s, shorter than MIN_WINDOW: back to s0 (0.12 s).
    assert end.t - s1.t < MIN_WINDOW <= end.t - s0.t
    load = mon.load(s2, end)
    assert load.wall == pytest.approx(0.04)
    assert load.foreign_cpu == pytest.approx(14 / TCK / 0.12)  # over s0..end
    assert load.own_cpu == pytest.approx(1.0)  # over s2..end
    assert load == load_between(s2, end, s0)
    # From s1 the window stops at s0 as well; from s0 there is nothing earlier.
    assert mon.load(s1, end) == load_between(s1, end, s0)
    assert mon.load(s0, end).foreign_cpu == pytest.approx(14 / TCK / 0.12)


def test_monitor_load_uses_start_when_long_enough(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path)
    mon = proc.monitor()
    mon.mark()
    proc.run(1.0, other=2.0)  # busy long before
    start = mon.mark()
    proc.run(0.25, own=1.0, other=0.0)
    end = mon.mark()
    assert mon.load(start, end).foreign_cpu == 0.0  # the old neighbour does not leak in


def test_monitor_load_short_history_takes_earliest(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path)
    mon = proc.monitor()
    first = mon.mark()
    proc.run(0.03, other=1.0)
    start = mon.mark()
    proc.run(0.02, other=0.0)
    end = mon.mark()
    load = mon.load(start, end)  # 0.05 s of history in all: the earliest snapshot
    assert load == load_between(start, end, first)
    assert load.foreign_cpu == pytest.approx(3 / TCK / 0.05)


# --------------------------------------------------------------------------- wait_quiet


def test_wait_quiet_returns_at_once_when_quiet(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path)
    mon = proc.monitor()
    budget = QuietBudget(5.0)
    load = mon.wait_quiet(budget)
    assert proc.sleeps == [QUIET_WINDOW]
    assert budget.waited == pytest.approx(QUIET_WINDOW) and clock.t == pytest.approx(QUIET_WINDOW)
    assert load is not None and load.foreign_cpu == 0.0 and load.cpu_pressure == 0.0


def test_wait_quiet_waits_until_neighbour_stops(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path)
    proc.neighbour = lambda t: 1.0 if t < 1.0 else 0.0  # one busy core for the first second
    mon = proc.monitor()
    budget = QuietBudget(5.0)
    load = mon.wait_quiet(budget)
    assert proc.sleeps == [0.25] * 5  # four busy windows, then a quiet one
    assert budget.waited == pytest.approx(1.25) and budget.left == pytest.approx(3.75)
    assert load is not None and load.foreign_cpu == 0.0
    assert mon.rule.reason(load) is None


def test_wait_quiet_waits_for_pressure_too(tmp_path: Path) -> None:
    clock, proc = _machine(tmp_path)
    mon = proc.monitor()
    stalls = iter([0.5, 0.04])
    mon.sleep = lambda dt: proc.run(dt, stall=next(stalls))
    budget = QuietBudget(5.0)
    load = mon.wait_quiet(budget)
    assert budget.waited == pytest.approx(0.5)
    assert load is not None and load.cpu_pressure == pytest.approx(0.04)


@pytest.mark.parametrize(("seconds", "sleeps"), [(1.0, [0.25] * 4), (0.6, [0.25, 0.25, 0.1])])
def test_wait_quiet_bounded_on_busy_machine(
    tmp_path: Path, seconds: float, sleeps: list[float]
) -> None:
    clock, proc = _machine(tmp_path)
    proc.neighbour = lambda t: 2.0  # busy for ever
    mon = proc.monitor()
    budget = QuietBudget(seconds)
    load = mon.wait_quiet(budget)
    assert proc.sleeps == pytest.approx(sleeps)
    assert clock.t == pytest.approx(seconds) and budget.waited == pytest.approx(seconds)
    assert budget.left == 0.0
    assert load is not None and load.foreign_cpu == pytest.approx(2.0)  # the last, contended window
    # A spent budget waits no more.
    assert mon.wait_quiet(budget) is None and len(proc.sleeps) == len(sleeps)


def test_wait_quiet_never_exceeds_its_budget(tmp_path: Path) -> None:
    """The budget is a hard limit: a window shorter than 10 ms is not taken."""
    clock, proc = _machine(tmp_path)
    proc.neighbour = lambda t: 2.0
    mon = proc.monitor()
    budget = QuietBudget(0.255)
    mon.wait_quiet(budget)
    assert budget.waited <= budget.seconds
    assert proc.sleeps == pytest.approx([0.25])  # 5 ms left: no nap


# --------------------------------------------------------------------------- mean_load


def test_mean_load_is_wall_weighted() -> None:
    a = Load(
        wall=1.0,
        own_cpu=1.0,
        foreign_cpu=0.0,
        steal=None,
        cpu_pressure=0.1,
        runnable=0,
        freq_mhz=2000.0,
    )
    b = Load(
        wall=3.0,
        own_cpu=0.5,
        foreign_cpu=1.0,
        steal=0.2,
        cpu_pressure=None,
        runnable=2,
        freq_mhz=None,
        speed_compute=1.2,
        speed_memory=None,
    )
    m = mean_load([a, b, Load(wall=0.0, own_cpu=9.0)])
    assert m is not None
    assert m.to_dict() == pytest.approx(
        {
            "wall": 4.0,
            "own_cpu": 0.625,
            "foreign_cpu": 0.75,
            "steal": 0.2,  # over the loads that know it
            "cpu_pressure": 0.1,
            "runnable": 2,
            "freq_mhz": 2000.0,
            "speed_compute": 1.2,  # over the loads that know it
            "speed_memory": None,
        }
    )
    assert mean_load([]) is None and mean_load([Load(wall=0.0, own_cpu=0.0)]) is None


def test_snapshot_defaults_unknown() -> None:
    s = Snapshot(t=1.0, own_cpu=2.0)
    assert (s.busy, s.steal, s.pressure, s.runnable, s.freq_mhz) == (None, None, None, None, None)
    assert load_between(s, Snapshot(t=2.0, own_cpu=2.5)) == Load(wall=1.0, own_cpu=0.5)
