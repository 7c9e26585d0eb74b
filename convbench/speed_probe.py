"""The speed probe: how fast the machine itself ran while a case was timed.

A virtual machine can get slower with no trace in its own counters: the host runs other
guests on the sibling hyperthreads of its vCPUs, in its shared last-level cache and on
its memory bus, and changes its clocks. Measured on a 2-core KVM guest: a fixed 384x384
matmul took 4.2-8.0 ms from one second to the next, in regimes lasting seconds, while
steal and other processes' CPU stayed at zero; a compute-bound conv (diagonalwise) slowed
with it and a memory-bound one (native depthwise) much less, so their ratio moved from
2.6 to 4.2 within one process. Interleaving cannot cancel that: the ratio itself changed.

With ``timing: speed_tolerance`` set (it is off by default: see docs/timing.md, "The
speed probe", and benchmarks/machine_speed.md: on that VM the NumPy probe's compute part
read 25% slower in some fresh processes than in others while the convs did not move), every
CPU worker times a tiny fixed probe, at most every :data:`INTERVAL` seconds
between rounds (or samples), in two parts: ``compute`` (float64 matmuls that stay in the
L1/L2 caches) and ``memory`` (a copy larger than a core's L2). Each part is the fastest
of :data:`REPEATS` tries, divided by the machine's reference time for it: 1.0 is the
reference speed, 1.4 is 1.4x slower. The quiet guard treats a round whose probe is off
the reference by more than ``timing: speed_tolerance`` like a contended one
(:class:`convbench.contention.ContentionRule`).

The reference (:func:`establish`) is the per-part median of the probe over the latest
:data:`HISTORY` runs on this machine (its host name, CPU model, usable CPUs and the probe
version), kept in ``speed-reference.json`` under ``$CONVBENCH_CACHE_DIR`` (default
``$XDG_CACHE_HOME/convbench`` or ``~/.cache/convbench``), so runs minutes or days apart
are judged against the same speed; a first run on a machine is judged against its own
start. run.json records it (``speed_reference``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convbench.contention import Monitor, QuietBudget
from convbench.cpu_topology import available_cpus
from convbench.schema import now_iso

__all__ = ["HISTORY", "INTERVAL", "PROBE_VERSION", "Speed", "SpeedProbe", "establish", "reference_file"]

#: Bumped whenever the probe's work changes: references of another version are not used.
PROBE_VERSION = 1
#: Least seconds between two readings of one probe (a reading costs about 1 ms).
INTERVAL = 0.1
#: Tries per part of a reading; the fastest counts (an interrupt lengthens one try).
REPEATS = 3
#: Runs whose start readings make a machine's reference.
HISTORY = 20
#: Seconds of readings taken for a run's own start reading.
ESTABLISH_SECONDS = 0.4
#: Most seconds a run's start reading waits for a quiet machine.
QUIET_WAIT = 3.0


@dataclass(frozen=True)
class Speed:
    """Seconds of the probe's two parts (or, relative to a reference, their ratios)."""

    compute: float
    memory: float

    def over(self, reference: Speed) -> Speed:
        """This reading relative to ``reference`` (1.0: as fast; 1.4: 1.4x slower)."""
        return Speed(self.compute / reference.compute, self.memory / reference.memory)

    @classmethod
    def from_dict(cls, value: Any) -> Speed | None:
        try:
            speed = cls(float(value["compute"]), float(value["memory"]))
        except (KeyError, TypeError, ValueError):
            return None
        return speed if speed.compute > 0 and speed.memory > 0 else None


class SpeedProbe:
    """The probe's buffers and its last reading. ``reference`` None: readings are absolute."""

    def __init__(self, reference: Speed | None = None, interval: float = INTERVAL, clock: Callable[[], float] = time.perf_counter) -> None:
        rng = np.random.default_rng(0)
        self._matrix = rng.standard_normal((96, 96))
        self._src = rng.standard_normal(1 << 19)  # 4 MiB: past a core's L2
        self._dst = np.empty_like(self._src)
        self.reference = reference
        self.interval = interval
        self.clock = clock
        self._last: Speed | None = None
        self._at = -float("inf")

    def measure(self) -> Speed:
        """One reading now, in seconds per part."""
        compute = memory = float("inf")
        for _ in range(REPEATS):
            t0 = self.clock()
            for _ in range(4):
                self._matrix @ self._matrix
            t1 = self.clock()
            np.copyto(self._dst, self._src)
            t2 = self.clock()
            compute, memory = min(compute, t1 - t0), min(memory, t2 - t1)
        return Speed(compute, memory)

    def reading(self, fresh: bool = False, after_idle: bool = False) -> Speed | None:
        """The speed relative to the reference: a new reading when ``fresh`` or when the
        last is older than ``interval``, else the last one. None without a reference.
        ``after_idle``: the process slept just before (a quiet-wait window), so one
        reading is thrown away first: a CPU waking from idle read the compute part 16%
        slower on the first try here."""
        if self.reference is None:
            return None
        if fresh or self._last is None or self.clock() - self._at >= self.interval:
            if after_idle:
                self.measure()
            self._last = self.measure().over(self.reference)
            self._at = self.clock()
        return self._last


def reference_file() -> Path:
    """Where the machines' start readings are kept (see the module docstring)."""
    root = os.environ.get("CONVBENCH_CACHE_DIR")
    if root:
        return Path(root) / "speed-reference.json"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "convbench" / "speed-reference.json"


def machine_key(cpus: tuple[int, ...] | None = None) -> str:
    """The machine a reference belongs to: host, CPU model, the CPUs the workers use, probe version."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    used = cpus or tuple(available_cpus())
    return f"{platform.node()} | {model} | cpus {','.join(map(str, used))} | probe v{PROBE_VERSION}"


def establish(
    cpus: tuple[int, ...] | None = None, path: Path | None = None, seconds: float = ESTABLISH_SECONDS,
    probe: SpeedProbe | None = None, monitor: Monitor | None = None, quiet_wait: float = QUIET_WAIT,
) -> dict[str, Any]:
    """Read the probe for ``seconds`` (pinned to ``cpus`` where given), add the reading to
    this machine's history and return the reference: ``compute`` and ``memory`` (the
    per-part medians of the history's clean readings, in seconds), ``runs`` (readings in
    the history), ``this_run``, ``key`` and ``file``.

    It first waits, at most ``quiet_wait`` seconds, for the machine to be quiet by the
    ``monitor``'s rule; a reading taken while other work used the CPU is kept with
    ``contended: true`` and left out of the reference while clean ones exist. A history
    that cannot be read or written is noted in ``note``; the run's own reading is the
    reference then."""
    probe = probe or SpeedProbe()
    monitor = monitor or Monitor()
    with _pinned(cpus):
        monitor.wait_quiet(QuietBudget(quiet_wait))
        probe.measure()  # warm the buffers and BLAS
        readings = []
        start = monitor.mark()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(readings) < 5:
            readings.append(probe.measure())
        load = monitor.load(start, monitor.mark())
    contended = monitor.rule.reason(load) is not None
    now = Speed(statistics.median(r.compute for r in readings), statistics.median(r.memory for r in readings))
    path = path or reference_file()
    key = machine_key(cpus)
    note = None
    history: list[dict[str, Any]] = []
    try:
        doc = json.loads(path.read_text()) if path.exists() else {}
        history = [h for h in doc.get(key, []) if Speed.from_dict(h)] if isinstance(doc, dict) else []
    except (OSError, ValueError) as exc:
        doc, note = {}, f"history not read ({exc}): this run's own reading is the reference"
    history = [*history, {**asdict(now), "time": now_iso(), "contended": contended}][-HISTORY:]
    try:
        doc = doc if isinstance(doc, dict) else {}
        doc[key] = history
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(path)
    except OSError as exc:
        note = f"history not saved ({exc})"
    clean = [h for h in history if not h.get("contended")] or history
    reference = Speed(statistics.median(h["compute"] for h in clean), statistics.median(h["memory"] for h in clean))
    out = {
        **asdict(reference), "runs": len(history), "clean_runs": sum(not h.get("contended") for h in history),
        "this_run": {**asdict(now), "contended": contended, "load": load.describe()}, "key": key, "file": str(path),
    }  # fmt: skip
    return {**out, "note": note} if note else out


@contextlib.contextmanager
def _pinned(cpus: tuple[int, ...] | None):  # noqa: ANN202
    """This process on ``cpus`` for the block (no-op without them or without affinity)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, cpus)
        yield
    finally:
        os.sched_setaffinity(0, before)
