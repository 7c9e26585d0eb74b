"""Tests of the speed probe (convbench.speed_probe) and of the guard judging the machine's speed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from convbench.contention import ContentionRule, Load, Monitor
from convbench.speed_probe import HISTORY, Speed, SpeedProbe, establish, reference_file
from convbench.timing import Guard, TimingConfig, measure, measure_interleaved
from tests.test_contention import FakeProc
from tests.test_guard import BusySampler
from tests.test_timing import FakeClock

REF = Speed(compute=1e-4, memory=3e-4)


class ScriptedProbe(SpeedProbe):
    """A probe whose readings come from ``speed_at(t)`` (seconds per part at fake time t)."""

    def __init__(self, clock: Callable[[], float], speed_at: Callable[[float], Speed], reference: Speed | None = REF, interval: float = 0.0) -> None:
        super().__init__(reference, interval=interval, clock=clock)
        self.speed_at = speed_at
        self.measured = 0

    def measure(self) -> Speed:
        self.measured += 1
        return self.speed_at(self.clock())


def test_speed_relative_to_a_reference_and_from_dict() -> None:
    assert Speed(2e-4, 3e-4).over(REF) == Speed(pytest.approx(2.0), pytest.approx(1.0))
    assert Speed.from_dict({"compute": 1e-4, "memory": 3e-4, "runs": 4}) == REF
    for bad in (None, {}, {"compute": "x", "memory": 1}, {"compute": 0, "memory": 1e-4}, {"compute": 1e-4}):
        assert Speed.from_dict(bad) is None


def test_real_probe_reads_positive_seconds() -> None:
    speed = SpeedProbe().measure()
    # a unit check, not a timing: ~1e-4 s quiet, 0.135 s measured at load average 5 on 2 cores
    assert 0 < speed.compute < 2.0 and 0 < speed.memory < 2.0
    assert SpeedProbe().reading() is None  # no reference: nothing to judge


def test_reading_is_reused_within_the_interval() -> None:
    clock = FakeClock()
    probe = ScriptedProbe(clock, lambda t: Speed(1e-4 * (1 + t), 3e-4), interval=0.1)
    first = probe.reading()
    assert first == Speed(pytest.approx(1.0), pytest.approx(1.0)) and probe.measured == 1
    clock.t += 0.05
    assert probe.reading() is first and probe.measured == 1
    assert probe.reading(fresh=True).compute == pytest.approx(1.05) and probe.measured == 2
    assert probe.reading(fresh=True, after_idle=True) is not None and probe.measured == 4  # one thrown away
    clock.t += 0.2
    assert probe.reading().compute == pytest.approx(1.25) and probe.measured == 5


@pytest.mark.parametrize(
    ("compute", "memory", "off"),
    [(1.0, 1.0, False), (1.09, 0.93, False), (1.12, 1.0, True), (1.0, 0.88, True), (None, None, False)],
)
def test_rule_judges_speed_both_ways(compute: float | None, memory: float | None, off: bool) -> None:
    load = Load(wall=0.1, own_cpu=1.0, foreign_cpu=0.0, cpu_pressure=0.0, speed_compute=compute, speed_memory=memory)
    rule = ContentionRule()
    assert rule.off_speed(load) is off
    reason = rule.reason(load)
    assert (reason is not None) is off
    if off:
        assert f"the speed probe took {compute:.2f}x (compute) and {memory:.2f}x (memory)" in reason
    assert ContentionRule(speed=None).reason(load) is None  # speed not judged
    assert TimingConfig().rule().speed is None  # opt-in: off by default
    assert TimingConfig(speed_tolerance=0).rule().speed is None
    assert TimingConfig(speed_tolerance=0.2).rule().off_speed(load) is False


def _slow_between(t0: float, t1: float, factor: float = 1.5) -> Callable[[float], Speed]:
    return lambda t: Speed(REF.compute * (factor if t0 <= t < t1 else 1.0), REF.memory)


def test_wait_drops_rounds_taken_while_the_machine_ran_slow(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = FakeProc(tmp_path, clock)
    monitor = proc.monitor()
    # No neighbour, no steal: only the probe shows that the machine ran slow for a while.
    monitor.probe = ScriptedProbe(clock, _slow_between(1.0, 2.0))
    a, b = BusySampler(proc, 0.1), BusySampler(proc, 0.2)
    cfg = TimingConfig(warmup_iters=0, warmup_time=0.0, min_samples=10, max_time=10.0, quiet_wait=5.0, guard="wait")
    m = measure_interleaved({"a": a, "b": b}, cfg, "a", clock, guard=Guard.for_case(monitor, cfg, "cpu"))
    kept = m.members["a"].kept
    reasons = m.members["a"].reasons
    dropped = [i for i, k in enumerate(kept) if not k]
    assert dropped and all("the speed probe took 1.50x (compute)" in (reasons[i] or "") for i in dropped)
    assert all(reasons[i] is None for i, k in enumerate(kept) if k)
    assert m.members["a"].contended is False and m.members["a"].load.speed_compute == pytest.approx(1.0)
    assert m.members["a"].dropped == len(dropped)


def test_flag_marks_a_case_timed_at_another_speed(tmp_path: Path) -> None:
    clock = FakeClock()
    proc = FakeProc(tmp_path, clock)
    monitor = proc.monitor()
    monitor.probe = ScriptedProbe(clock, _slow_between(0.0, 1e9, factor=0.8))  # faster throughout
    cfg = TimingConfig(warmup_iters=0, warmup_time=0.0, min_samples=10, max_time=10.0, guard="flag")
    m = measure(BusySampler(proc, 0.1), cfg, clock, guard=Guard.for_case(monitor, cfg, "cpu"))
    assert m.contended is True and m.dropped == 0
    assert "the speed probe took 0.80x (compute)" in m.contention
    assert m.load is not None and m.load.speed_compute == pytest.approx(0.8)


class QuietMonitor(Monitor):
    """A monitor over a fake /proc whose load is chosen by the test."""

    def __init__(self, proc: FakeProc, busy: bool) -> None:
        super().__init__(proc.reader(), sleep=proc.sleep)
        self.proc, self.busy = proc, busy

    def mark(self):  # noqa: ANN201
        self.proc.run(0.05, own=1.0, other=1.0 if self.busy else None)
        return super().mark()


def _probe(speed: Speed) -> ScriptedProbe:
    return ScriptedProbe(FakeClock(), lambda t: speed, reference=None)


def test_establish_keeps_a_history_and_leaves_contended_readings_out(tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    proc = FakeProc(tmp_path, FakeClock())
    first = establish(path=path, seconds=0.0, probe=_probe(Speed(1e-4, 3e-4)), monitor=QuietMonitor(proc, busy=False), quiet_wait=0.0)
    assert (first["compute"], first["memory"], first["runs"], first["clean_runs"]) == (1e-4, 3e-4, 1, 1)
    assert first["this_run"]["contended"] is False and "note" not in first
    busy = establish(path=path, seconds=0.0, probe=_probe(Speed(5e-4, 9e-4)), monitor=QuietMonitor(proc, busy=True), quiet_wait=0.0)
    # A reading under load joins the history but not the reference while clean ones exist.
    assert busy["this_run"]["contended"] is True and "other processes used 1.00 cores" in busy["this_run"]["load"]
    assert (busy["compute"], busy["runs"], busy["clean_runs"]) == (1e-4, 2, 1)
    for k in range(3):
        last = establish(path=path, seconds=0.0, probe=_probe(Speed((2 + k) * 1e-4, 3e-4)), monitor=QuietMonitor(proc, busy=False), quiet_wait=0.0)
    assert last["compute"] == pytest.approx(2.5e-4)  # median of 1, 2, 3, 4 (e-4)
    doc = json.loads(path.read_text())
    assert list(doc) == [last["key"]] and len(doc[last["key"]]) == 5


def test_establish_history_is_bounded_and_survives_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    proc = FakeProc(tmp_path, FakeClock())
    for k in range(HISTORY + 5):
        out = establish(path=path, seconds=0.0, probe=_probe(Speed((1 + k) * 1e-5, 3e-4)), monitor=QuietMonitor(proc, busy=False), quiet_wait=0.0)
    assert out["runs"] == HISTORY
    assert out["compute"] == pytest.approx(15.5e-5)  # median of the last 20 readings, 6..25 (e-5)
    path.write_text("{not json")
    out = establish(path=path, seconds=0.0, probe=_probe(Speed(7e-5, 2e-4)), monitor=QuietMonitor(proc, busy=False), quiet_wait=0.0)
    assert "history not read" in out["note"] and (out["compute"], out["runs"]) == (7e-5, 1)


def test_reference_file_follows_the_cache_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONVBENCH_CACHE_DIR", str(tmp_path / "c"))
    assert reference_file() == tmp_path / "c" / "speed-reference.json"
    monkeypatch.delenv("CONVBENCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert reference_file() == tmp_path / "x" / "convbench" / "speed-reference.json"


def test_run_with_the_probe_records_the_reference_and_per_case_speed(tmp_path: Path) -> None:
    """End to end: ``speed_tolerance`` set, a torch run keeps the machine's reference in
    run.json and the probe's readings in both tables (off by default: test_rule_judges_speed_both_ways)."""
    import pandas as pd

    from tests.conftest import run_cli

    suite = tmp_path / "probe.yaml"
    suite.write_text(
        "name: probe\n"
        "workloads:\n  - {id: dw, kind: depthwise, params: {channels: 8, size: 8}}\n"
        "matrix:\n  - {variant: [native, diagonalwise], backend: [torch], device: [cpu], mode: [inference], batch: [1]}\n"
        "timing: {warmup_time: 0.01, min_samples: 3, max_time: 0.2, speed_tolerance: 0.5}\n"
    )
    cache = tmp_path / "cache"
    proc = run_cli("run", str(suite), "--out", str(tmp_path / "on"), CONVBENCH_CACHE_DIR=str(cache))
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "on" / "run.json").read_text())
    ref = meta["speed_reference"]
    assert ref["runs"] == 1 and ref["compute"] > 0 and ref["memory"] > 0 and ref["file"] == str(cache / "speed-reference.json")
    cases = pd.read_parquet(tmp_path / "on" / "cases.parquet")
    samples = pd.read_parquet(tmp_path / "on" / "samples.parquet")
    assert cases["speed_compute"].notna().all() and cases["speed_memory"].notna().all()
    assert samples["speed_compute"].notna().all()
