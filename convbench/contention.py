"""Contention telemetry: what else the machine did while a case was timed.

Framework-free. A :class:`Reader` takes a :class:`Snapshot` of the counters the kernel
keeps (Linux ``/proc``; psutil elsewhere); :func:`load_between` turns two snapshots into
a :class:`Load`, the machine's activity over that interval; a :class:`ContentionRule`
says whether a load makes a timing untrustworthy; a :class:`Monitor` takes snapshots
around samples and waits, bounded, for the machine to be quiet.

What is measured (each in CPU cores, i.e. CPU-seconds per second of wall time, unless
said otherwise):

* ``own_cpu``: the timed processes' own CPU time (this process by default, exact;
  or a list of pids, from ``/proc/PID/stat``);
* ``foreign_cpu``: CPU time the machine spent on anything else: every CPU's busy time
  (user, nice, system, irq, softirq; ``/proc/stat``) minus ``own_cpu``;
* ``steal``: time the hypervisor ran other guests on this VM's CPUs (``/proc/stat``);
* ``cpu_pressure``: the fraction of the interval during which at least one runnable
  task waited for a CPU (Linux PSI, ``/proc/pressure/cpu`` "some"; exact, in us);
* ``runnable``: tasks running or runnable at the end of the interval, this one
  excepted (``procs_running`` of ``/proc/stat``);
* ``freq_mhz``: the mean current clock of the CPUs, where the OS exposes it (else None,
  shown as "unknown");
* ``speed_compute``, ``speed_memory``: the speed probe's time relative to the machine's
  reference (1.0: as fast), where one runs.

``/proc/stat`` counts in clock ticks (10 ms), too coarse for one short sample, so
``foreign_cpu`` and ``steal`` of a sample are taken over a window reaching back at least
:data:`MIN_WINDOW` seconds through the previous snapshots (:meth:`Monitor.load`).

The rule (:class:`ContentionRule`): an interval is *contended* when other work used at
least ``cores`` CPU cores (``foreign_cpu + steal``; default 0.25), or tasks waited for a
CPU at least ``pressure`` of the time (default 5%), or, where a speed probe runs
(:mod:`convbench.speed_probe`, opt-in: CPU cases of ``convbench run``), the machine itself ran
more than ``speed`` (default 10%) slower or faster than its reference. A case is contended when more than
:data:`CONTENDED_FRACTION` of the samples its statistics use are, or when those samples
taken together are (see :func:`convbench.timing.measure`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from convbench.speed_probe import SpeedProbe

__all__ = [
    "CONTENDED_FRACTION",
    "CONTENDED_MEANING",
    "ContentionRule",
    "Load",
    "Monitor",
    "QuietBudget",
    "Reader",
    "Snapshot",
    "load_between",
    "mean_load",
    "own_faults",
    "parse_pid_stat",
    "parse_pressure",
    "parse_proc_stat",
]

#: Shortest window over which the tick-based counters (foreign CPU, steal) are read.
MIN_WINDOW = 0.1
#: Length of the quiet window the guard waits for (ticks are 10 ms: a 0.25 s window on
#: two CPUs reads foreign CPU within about +-0.08 cores).
QUIET_WINDOW = 0.25
#: A case is contended when more than this fraction of its used samples are.
CONTENDED_FRACTION = 0.1
#: Snapshots kept by a monitor for windowed loads.
HISTORY = 256
#: What "contended" means, in words, wherever a table, page or verdict explains the mark.
CONTENDED_MEANING = (
    "other processes used the CPU while it was timed (or, with the opt-in speed probe, the machine itself ran at "
    "another speed than its reference)"
)


@dataclass(frozen=True)
class Snapshot:
    """The counters at one instant. Times are seconds; None where unreadable."""

    t: float  #: monotonic clock
    own_cpu: float  #: CPU seconds of the timed processes
    busy: float | None = None  #: CPU seconds every CPU spent busy, summed over CPUs
    steal: float | None = None  #: CPU seconds stolen by the hypervisor, summed over CPUs
    pressure: float | None = None  #: seconds during which some task waited for a CPU
    runnable: int | None = None  #: tasks running or runnable (this one excepted)
    freq_mhz: float | None = None


@dataclass(frozen=True)
class Load:
    """The machine's activity over an interval (cores unless said otherwise)."""

    wall: float  #: seconds
    own_cpu: float
    foreign_cpu: float | None = None
    steal: float | None = None
    cpu_pressure: float | None = None  #: fraction of the interval
    runnable: int | None = None
    freq_mhz: float | None = None
    #: the speed probe's parts relative to the machine's reference (convbench.speed_probe):
    #: 1.0 as fast, 1.4 1.4x slower; None where no probe ran
    speed_compute: float | None = None
    speed_memory: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line, e.g. "other processes used 0.82 cores; tasks waited for a CPU 50% of the time"."""
        parts = []
        if self.foreign_cpu is not None:
            parts.append(f"other processes used {self.foreign_cpu:.2f} cores")
        if self.steal:
            parts.append(f"the hypervisor stole {self.steal:.2f} cores")
        if self.cpu_pressure is not None:
            parts.append(f"tasks waited for a CPU {self.cpu_pressure:.0%} of the time")
        if self.speed_compute is not None and self.speed_memory is not None:
            parts.append(
                f"the speed probe took {self.speed_compute:.2f}x (compute) and {self.speed_memory:.2f}x (memory) "
                "the machine's reference time"
            )
        return "; ".join(parts) or "no telemetry"


# --------------------------------------------------------------------------- parsing
def parse_proc_stat(text: str, ticks_per_second: float = 100.0) -> tuple[float, float, int | None]:
    """``(busy seconds, steal seconds, procs_running)`` from the text of ``/proc/stat``.

    Busy is user + nice + system + irq + softirq of the aggregate ``cpu`` line (guest
    time is already inside user and nice; idle and iowait are not busy).
    """
    busy = steal = None
    running = None
    for line in text.splitlines():
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:]]
            v += [0] * (8 - len(v))
            busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / ticks_per_second
            steal = v[7] / ticks_per_second
        elif line.startswith("procs_running"):
            running = int(line.split()[1])
    if busy is None or steal is None:
        raise ValueError("no aggregate 'cpu' line in /proc/stat text")
    return busy, steal, running


def parse_pressure(text: str) -> float:
    """Seconds of CPU "some" stall from the text of ``/proc/pressure/cpu``."""
    for line in text.splitlines():
        if line.startswith("some"):
            for field in line.split():
                if field.startswith("total="):
                    return int(field[len("total=") :]) / 1e6
    raise ValueError("no 'some ... total=' line in /proc/pressure/cpu text")


def parse_pid_stat(text: str, ticks_per_second: float = 100.0) -> float:
    """CPU seconds (utime + stime) from the text of ``/proc/PID/stat``."""
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / ticks_per_second


# --------------------------------------------------------------------------- reading
def own_faults() -> float | None:
    """Page faults (minor + major) this process has taken so far; None where unknown.

    A step that page-faults is timing the kernel's memory handling, not its own work
    (see :mod:`convbench.allocator`): the timing loops record the faults per iteration."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_minflt + usage.ru_majflt)


class Reader:
    """Reads the machine's counters; ``proc`` and ``sys`` roots are replaceable (tests).

    ``pids``: the timed processes (their CPU time is ``own_cpu``); default: this process,
    read exactly with :func:`time.process_time`. On systems without ``/proc`` the machine
    busy time comes from psutil, and pressure and steal are unknown.
    """

    def __init__(
        self,
        pids: Iterable[int] | None = None,
        proc: str | Path = "/proc",
        sys: str | Path = "/sys",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pids = list(pids) if pids is not None else None
        self._last: dict[int, float] = {}  #: pid -> CPU seconds last read (an exited pid keeps its total)
        self.proc = Path(proc)
        self.clock = clock
        self.ticks = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self.has_stat = (self.proc / "stat").exists()
        self.has_pressure = _readable(self.proc / "pressure" / "cpu")
        cpufreq = Path(sys) / "devices" / "system" / "cpu"
        self.freq_files = sorted(cpufreq.glob("cpu[0-9]*/cpufreq/scaling_cur_freq"))[:8]

    def own_cpu(self) -> float:
        if self.pids is None:
            return time.process_time()
        for pid in self.pids:
            with contextlib.suppress(OSError, ValueError, IndexError):  # an exited process keeps its last total
                self._last[pid] = parse_pid_stat((self.proc / str(pid) / "stat").read_text(), self.ticks)
        return sum(self._last.get(pid, 0.0) for pid in self.pids)

    def snapshot(self) -> Snapshot:
        own = self.own_cpu()
        busy = steal = pressure = None
        running = None
        if self.has_stat:
            busy, steal, running = parse_proc_stat((self.proc / "stat").read_text(), self.ticks)
        else:
            busy = _psutil_busy()
        if self.has_pressure:
            try:
                pressure = parse_pressure((self.proc / "pressure" / "cpu").read_text())
            except (OSError, ValueError):
                pressure = None
        return Snapshot(
            t=self.clock(), own_cpu=own, busy=busy, steal=steal, pressure=pressure,
            runnable=None if running is None else max(0, running - 1), freq_mhz=self.freq(),
        )  # fmt: skip

    def freq(self) -> float | None:
        values = []
        for f in self.freq_files:
            try:
                values.append(int(f.read_text()) / 1000)  # kHz
            except (OSError, ValueError):
                continue
        return sum(values) / len(values) if values else None


def _readable(path: Path) -> bool:
    try:
        parse_pressure(path.read_text())
        return True
    except (OSError, ValueError):
        return False


def _psutil_busy() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    t = psutil.cpu_times()
    return float(t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def load_between(a: Snapshot, b: Snapshot, window: Snapshot | None = None) -> Load:
    """The load from ``a`` to ``b``; foreign CPU and steal over ``window``..``b`` when
    given (an earlier snapshot: the tick-based counters need a longer interval)."""
    wall = b.t - a.t
    if wall <= 0:
        return Load(wall=max(wall, 0.0), own_cpu=0.0)
    w = window or a
    span = b.t - w.t
    foreign = steal = None
    if b.busy is not None and w.busy is not None and span > 0:
        foreign = max(0.0, (b.busy - w.busy) - (b.own_cpu - w.own_cpu)) / span
    if b.steal is not None and w.steal is not None and span > 0:
        steal = max(0.0, b.steal - w.steal) / span
    pressure = None
    if a.pressure is not None and b.pressure is not None:
        pressure = min(1.0, max(0.0, b.pressure - a.pressure) / wall)
    freqs = [f for f in (a.freq_mhz, b.freq_mhz) if f is not None]
    return Load(
        wall=wall, own_cpu=(b.own_cpu - a.own_cpu) / wall, foreign_cpu=foreign, steal=steal, cpu_pressure=pressure,
        runnable=b.runnable, freq_mhz=sum(freqs) / len(freqs) if freqs else None,
    )  # fmt: skip


@dataclass(frozen=True)
class ContentionRule:
    """When a load makes a timing untrustworthy (see the module docstring)."""

    cores: float = 0.25  #: foreign CPU + steal, in cores
    pressure: float = 0.05  #: fraction of the time some task waited for a CPU
    #: a speed-probe part further than this from the reference, either way (None: not judged)
    speed: float | None = 0.10

    def reason(self, load: Load) -> str | None:
        """Why ``load`` is contended, or None when it is quiet (or unknown)."""
        if self.sustained(load) or (load.cpu_pressure or 0.0) >= self.pressure:
            return load.describe()
        return None

    def sustained(self, load: Load) -> bool:
        """Whether ``load`` shows work that lasts (other work on ``cores`` cores, or a
        machine off its speed), not only a blip: tasks waiting for a CPU for part of one
        short sample (the machine's own kernel threads do that: ~1.6 ms waits every
        ~0.3 s on an idle 2-core VM, 10% of a 16 ms round)."""
        return (load.foreign_cpu or 0.0) + (load.steal or 0.0) >= self.cores or self.off_speed(load)

    def off_speed(self, load: Load) -> bool:
        """Whether a probe part ran more than ``speed`` slower or faster than the reference."""
        if not self.speed:
            return False
        limit = math.log1p(self.speed)
        return any(v is not None and v > 0 and abs(math.log(v)) > limit for v in (load.speed_compute, load.speed_memory))


@dataclass
class QuietBudget:
    """Seconds the guard may still spend waiting for quiet (one per case group)."""

    seconds: float
    waited: float = 0.0

    @property
    def left(self) -> float:
        return max(0.0, self.seconds - self.waited)


class Monitor:
    """Snapshots around samples, windowed loads, and waiting for quiet. With a ``probe``
    (:class:`convbench.speed_probe.SpeedProbe`) every load also carries the machine's
    speed, read after the interval it describes."""

    def __init__(
        self,
        reader: Reader | None = None,
        rule: ContentionRule | None = None,
        sleep: Callable[[float], None] = time.sleep,
        probe: SpeedProbe | None = None,
    ) -> None:
        self.reader = reader or Reader()
        self.rule = rule or ContentionRule()
        self.sleep = sleep
        self.probe = probe
        self.history: deque[Snapshot] = deque(maxlen=HISTORY)

    def mark(self) -> Snapshot:
        """Take a snapshot and remember it."""
        snap = self.reader.snapshot()
        self.history.append(snap)
        return snap

    def load(self, start: Snapshot, end: Snapshot) -> Load:
        """The load of ``start``..``end``, tick counters over at least MIN_WINDOW."""
        window = start
        for snap in reversed(self.history):
            if snap.t <= start.t:
                window = snap
                if end.t - snap.t >= MIN_WINDOW:
                    break
        return self._with_speed(load_between(start, end, window))

    def _with_speed(self, load: Load, fresh: bool = False) -> Load:
        speed = self.probe.reading(fresh, after_idle=fresh) if self.probe is not None else None
        if speed is None:
            return load
        return dataclasses.replace(load, speed_compute=speed.compute, speed_memory=speed.memory)

    def wait_quiet(self, budget: QuietBudget) -> Load | None:
        """Wait until one QUIET_WINDOW is quiet, spending at most ``budget.left`` (windows
        shorter than 10 ms are not taken).

        Returns the last window's load (None when the budget was already spent).
        """
        last = None
        while budget.left >= 0.01:
            start = self.mark()
            self.sleep(min(QUIET_WINDOW, budget.left))
            end = self.mark()
            budget.waited += max(0.0, end.t - start.t)
            last = self._with_speed(load_between(start, end), fresh=True)
            if self.rule.reason(last) is None:
                return last
        return last


def mean_load(loads: Iterable[Load]) -> Load | None:
    """Wall-weighted mean of several loads (runnable: the largest; None if none)."""
    items = [x for x in loads if x is not None and x.wall > 0]
    if not items:
        return None
    wall = sum(x.wall for x in items)

    def avg(name: str) -> float | None:
        known = [(getattr(x, name), x.wall) for x in items if getattr(x, name) is not None]
        if not known:
            return None
        return sum(v * w for v, w in known) / sum(w for _, w in known)

    runnable = [x.runnable for x in items if x.runnable is not None]
    return Load(
        wall=wall, own_cpu=avg("own_cpu") or 0.0, foreign_cpu=avg("foreign_cpu"), steal=avg("steal"),
        cpu_pressure=avg("cpu_pressure"), runnable=max(runnable) if runnable else None, freq_mhz=avg("freq_mhz"),
        speed_compute=avg("speed_compute"), speed_memory=avg("speed_memory"),
    )  # fmt: skip
