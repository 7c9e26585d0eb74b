"""Schedules cases onto worker processes, persists results as they come, and resumes.

Cases are grouped by :attr:`Case.group_key` (cases that differ only in variant run side
by side in one worker, interleaved) and groups by worker key (backend, device). Each
worker is a fresh ``python -m convbench.worker`` subprocess started with the backend's
interpreter. A worker that crashes or outlives the group's timeout is killed: the
unfinished cases of its group become ``error`` rows and a fresh worker takes the rest.
"""

from __future__ import annotations

import json
import math
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convbench import __version__
from convbench.allocator import worker_environment
from convbench.backend import backend_venv
from convbench.cases import Case, format_case_id, parse_case_id
from convbench.cpu_topology import format_cpu_list
from convbench.ratio_stats import paired_test
from convbench.results import CASE_COLUMNS, SCHEMA_ID, RunFolder, empty_row, now_iso
from convbench.rows import rates
from convbench.timing import TimingConfig, summarize

STARTUP_TIMEOUT = 180.0
ResultCallback = Callable[[dict[str, Any]], None]
Sink = Callable[[dict[str, Any], list[dict[str, Any]]], None]

#: Statistics columns recomputed from the pooled samples of several processes.
_STAT_FIELDS = ("median", "q1", "q3", "iqr", "ci_low", "ci_high", "mean", "stdev", "min", "max", "n")


Run = tuple[dict[str, Any], list[dict[str, Any]]]  #: one case's row and samples from one worker run


def merge_processes(
    runs: list[Run], confidence: float = 0.95, *, unit: str = "process", timing: TimingConfig | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One row from the same case run in several fresh processes (or passes: ``unit``).

    A case that failed in any process keeps that process's row (its reason says which).
    Otherwise the statistics are recomputed over the pooled kept samples (within- and
    between-process spread together) and ``process_spread`` is the relative spread
    between processes: the stdev of the per-process medians over their median. The
    interleaved ratio is not pooled as if its rounds were independent: each process's
    median log ratio, with its standard error, is pooled by random effects
    (:func:`convbench.ratio_stats.paired_test`), so a process whose ratio differs from the
    others' (memory placement differs per process: measured up to ~6% on a 2-core VM)
    widens the CI instead of hiding in it. The case is contended when any process was.
    It is converged when every run was, or, given its ``timing``, when the pooled samples
    meet its rule (>= ``min_samples``, CI half-width within ``precision``): passes each
    get a share of the budget, so one pass alone need not converge.
    """
    for k, (row, _) in enumerate(runs):
        if row["status"] == "skipped":  # a property of the case, not of one process
            return {**row, "processes": len(runs)}, []
        if row["status"] != "ok":
            return {**row, "reason": f"{unit} {k + 1} of {len(runs)}: {row['reason']}", "processes": len(runs)}, []
    row = dict(runs[0][0])
    samples = [{**s, "process": k} for k, (_, ss) in enumerate(runs) for s in ss]
    for i, s in enumerate(samples):
        s["index"] = i
    used = [s for s in samples if s.get("kept") is not False]
    if used:
        stats = summarize([s["seconds"] for s in used], confidence)
        row.update({f: getattr(stats, f) for f in _STAT_FIELDS})
        medians = [r["median"] for r, _ in runs]
        row["process_spread"] = statistics.stdev(medians) / statistics.median(medians) if len(medians) > 1 else 0.0
        pooled = timing is not None and stats.n >= timing.min_samples and (
            (stats.ci_high - stats.ci_low) / 2 <= timing.precision * stats.median
        )
        row["converged"] = all(r["converged"] for r, _ in runs) or pooled
        rounds = [s for s in used if s.get("ratio") is not None]
        if rounds:
            rt = paired_test([s["ratio"] for s in rounds], confidence, groups=[s["process"] for s in rounds])
            row.update(ratio=rt.ratio, ratio_ci_low=rt.ci_low, ratio_ci_high=rt.ci_high)
        row["rounds"] = sum(r["rounds"] or 0 for r, _ in runs) or None
        row["timing_seconds"] = sum(r["timing_seconds"] or 0 for r, _ in runs)
        row.update(rates(row))
        flags = [r.get("contended") for r, _ in runs]
        if any(f is not None for f in flags):
            row["contended"] = any(bool(f) for f in flags)
            row["contention"] = "; ".join(
                f"{unit} {k + 1}: {r['contention']}" for k, (r, _) in enumerate(runs) if r.get("contention")
            ) or None
        row["dropped"] = sum(r.get("dropped") or 0 for r, _ in runs)
        row["quiet_wait"] = sum(r.get("quiet_wait") or 0 for r, _ in runs)
        for f in ("foreign_cpu", "steal", "cpu_pressure", "page_faults"):
            values = [r[f] for r, _ in runs if r.get(f) is not None]
            row[f] = statistics.fmean(values) if values else None
    row["processes"] = len(runs)
    return row, samples


def pass_share(timing: TimingConfig, passes: int) -> TimingConfig:
    """What one of ``passes`` passes times a case with: ``max_time / passes``, and a stopping
    rule the pooled passes meet together: ``min_samples / passes`` samples (at least 3)
    and a CI half-width of ``precision * sqrt(passes)`` (a median's CI narrows as the
    square root of the samples), so a pass that reaches its share stops early instead of
    spending its budget on a precision only the pooled samples need."""
    if passes == 1:
        return timing
    min_samples = max(3, math.ceil(timing.min_samples / passes))
    return timing.model_copy(update={
        "max_time": timing.max_time / passes,
        "min_samples": min_samples,
        "max_samples": max(min_samples, math.ceil(timing.max_samples / passes)),
        "precision": timing.precision * math.sqrt(passes),
    })


class WorkerError(Exception):
    """The worker died, hung or broke the protocol."""


#: The checkout (or installed tree) a plugin's relative :attr:`~convbench.backend.Backend.venv` is in.
CHECKOUT = Path(__file__).resolve().parent.parent


def interpreter_for(backend: str, configured: dict[str, str] | None = None) -> str:
    """The Python that hosts ``backend``: the suite's ``interpreters`` entry, else the
    environment variable ``CONVBENCH_PYTHON_<BACKEND>``, else the virtual environment the
    plugin declares (:attr:`~convbench.backend.Backend.venv`, e.g. mxnet's ``.venv-mxnet``
    in the checkout) if it exists, else this interpreter."""
    if configured and backend in configured:
        return str(configured[backend])
    env = os.environ.get(f"CONVBENCH_PYTHON_{backend.upper()}")
    if env:
        return env
    venv = backend_venv(backend)
    if venv:
        python = CHECKOUT / venv / "bin" / "python"
        if python.exists():
            return str(python)
    return sys.executable


class Worker:
    """One worker subprocess and the thread that reads its events."""

    def __init__(
        self, python: str, backend: str, log_path: Path, cpus: tuple[int, ...] | None = None, allocator: str = "steady"
    ) -> None:
        self.backend = backend
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        env = {**worker_environment(allocator, os.environ), "PYTHONUNBUFFERED": "1"}
        # Pinned: convbench.pin sets the affinity before the worker imports anything.
        pin = ["convbench.pin", format_cpu_list(cpus)] if cpus else []
        self.proc = subprocess.Popen(
            [python, "-m", *pin, "convbench.worker", "--backend", backend],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
            start_new_session=True,  # Ctrl-C in the terminal reaches the runner, not the worker
        )
        self.log_path = log_path
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.hello = self.next_event(STARTUP_TIMEOUT)
            if self.hello.get("event") != "hello":
                raise WorkerError(f"unexpected first message {self.hello}")
            if self.hello.get("schema") != SCHEMA_ID:
                raise WorkerError(
                    f"{python} runs convbench {self.hello.get('convbench', '(unknown)')} whose result schema "
                    f"({self.hello.get('schema')}) differs from this runner's ({__version__}, {SCHEMA_ID}): "
                    "install the same convbench in both"
                )
        except WorkerError:
            self.close(kill=True)  # the caller never gets this worker: do not leave it running
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                self.events.put({"event": "garbage", "line": line[:200]})
        self.events.put(None)

    def next_event(self, timeout: float) -> dict[str, Any]:
        try:
            event = self.events.get(timeout=max(timeout, 0.01))
        except queue.Empty:
            raise WorkerError(f"no answer within {timeout:.0f} s (timed out)") from None
        if event is None:
            code = self.proc.wait()
            raise WorkerError(f"worker exited with code {code}: {self.stderr_tail()}")
        return event

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError(f"worker is gone: {self.stderr_tail()}") from exc

    def run(
        self, cases: list[Case], options: dict[str, Any], timeout: float, cmd: str = "run"
    ) -> Iterator[dict[str, Any]]:
        """Send one group with ``cmd`` (``run`` or ``profile``); yield its events.
        Raises WorkerError on crash or timeout."""
        self.send({"cmd": cmd, "cases": [c.model_dump() for c in cases], **options})
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(deadline - time.monotonic())
            if event.get("event") == "done":
                return
            if event.get("event") in ("start", "timing", "result", "peaks", "profile"):
                yield event

    def stderr_tail(self, chars: int = 1500) -> str:
        try:
            self.log.flush()
            text = self.log_path.read_bytes()[-chars:].decode(errors="replace").strip()
        except OSError:
            text = ""
        return text or "(no output on stderr)"

    def close(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            if not kill:
                try:
                    self.send({"cmd": "exit"})
                    self.proc.wait(timeout=10)
                except (WorkerError, subprocess.TimeoutExpired):
                    kill = True
            if kill:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@dataclass
class RunOptions:
    """How the runner executes cases (from the suite, after its preset)."""

    timing: TimingConfig = field(default_factory=TimingConfig)
    timeout: float = 600.0
    tolerance: dict[str, float] = field(default_factory=dict)
    interpreters: dict[str, str] = field(default_factory=dict)
    verify_only: bool = False
    cpus: tuple[int, ...] | None = None  #: pin workers to these CPUs (``--cpus``)


def group_cases(cases: list[Case]) -> list[list[Case]]:
    """Cases grouped by group key, groups ordered by worker key then first appearance."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group_key, []).append(case)
    order = {}
    for case in cases:
        order.setdefault(case.worker_key, len(order))
    return sorted(groups.values(), key=lambda g: order[g[0].worker_key])


def resolve_threads(case: Case, cores: int | None = None) -> Case:
    """CPU cases name their thread count explicitly: None means every core of the
    machine that runs them (every pinned core, ``cores``, when the workers are pinned;
    a fleet resolves on each node)."""
    if case.device == "cpu" and case.threads is None:
        return case.model_copy(update={"threads": cores or os.cpu_count() or 1})
    return case


def key_without_threads(case_id: str) -> str:
    """``case_id`` with threads unset (``None``): what a plan that leaves threads to the
    machine that runs it (a fleet) matches; an id that is no case id stays as it is."""
    try:
        return format_case_id({**parse_case_id(case_id), "threads": None})
    except ValueError:
        return case_id


def finished_planned(folder: RunFolder, cases: list[Case]) -> set[str]:
    """Planned case ids the folder already holds a row for (threads unset matches any)."""
    done = folder.finished_ids()
    loose = {key_without_threads(i) for i in done}
    return {c.case_id for c in cases if c.case_id in done or (c.threads is None and key_without_threads(c.case_id) in loose)}


class Runner:
    """Runs cases into a :class:`RunFolder`, one worker per (backend, device) at a time.

    Each group is sent with the worker command :attr:`command` (``run``: verify, then
    time). A subclass that sends another command (``profile``:
    :class:`convbench.profile_runner.ProfileRunner`) keeps the scheduling, the pinning
    and the fault handling, and overrides the hooks: :meth:`message`, :meth:`result_of`,
    :meth:`finished`, :meth:`backend_envs`, :meth:`canary`, :meth:`_record`.
    """

    #: The worker command each group is sent with (see :mod:`convbench.worker`).
    command = "run"

    def __init__(self, folder: RunFolder, options: RunOptions, on_result: ResultCallback | None = None) -> None:
        self.folder = folder
        self.options = options
        self.on_result = on_result or (lambda row: None)
        self.worker: Worker | None = None
        self.worker_key: tuple[str, str] | None = None
        self.worker_count = 0
        self.timing = options.timing  #: what groups are sent (a pass's share of the budget)

    def run(self, cases: list[Case]) -> None:
        """Run every case not yet finished in the folder; Ctrl-C propagates after cleanup."""
        done = self.finished(cases)
        todo = [c for c in cases if c.case_id not in done]
        groups = group_cases(todo)
        try:
            self.establish_speed(todo)
            self.canary("start")
            if self.pass_count() > 1:
                self.run_passes(groups, self.pass_count())
            else:
                for i, group in enumerate(groups):
                    if i and i == len(groups) // 2:
                        self.canary("middle")
                    self.run_group(group)
            self.canary("end")
        finally:
            self.stop_worker(kill=True)

    def pass_count(self) -> int:
        """How many passes :meth:`run` makes over the case groups (``timing: passes``)."""
        return self.options.timing.passes

    def run_passes(self, groups: list[list[Case]], passes: int) -> None:
        """Every group, ``passes`` times over, each pass with its share of the timing
        (:func:`pass_share`); then one merged row per case (:func:`merge_processes`, a pass
        for a process).

        Passes spread each case's measurement over the whole run, so the host's slow
        drift (minutes; docs/timing.md) lands in the spread between passes, where the
        merged ratio's CI sees it, instead of in one contiguous stretch. A case that did
        not time ``ok`` in a pass is not run again. If the run is interrupted, the cases
        measured so far are still recorded, from the passes they got (``processes``
        counts them), so nothing measured is lost and a resumed run skips them."""
        base = self.options.timing
        self.timing = pass_share(base, passes)
        unit = "pass" if base.processes == 1 else "run"
        collected: dict[str, list[Run]] = {}
        schedule = [group for _ in range(passes) for group in groups]
        try:
            for i, group in enumerate(schedule):
                if i and i == len(schedule) // 2:
                    self.canary("middle")
                live = [c for c in group if all(r["status"] == "ok" for r, _ in collected.get(c.case_id, []))]
                if live:
                    self.collect_group(live, collected)  # into ``collected`` as they come: an interruption keeps them
        finally:
            self.timing = base
            for case in (c for group in groups for c in group):
                runs = collected.get(case.case_id)
                if runs:
                    self._record(*self._merged(runs, unit))

    def _merged(self, runs: list[Run], unit: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if len(runs) == 1:
            return {**runs[0][0], "processes": 1}, runs[0][1]
        return merge_processes(runs, self.options.timing.confidence, unit=unit, timing=self.options.timing)

    def finished(self, cases: list[Case]) -> set[str]:
        """Ids of ``cases`` the folder already holds (``run`` leaves them out)."""
        return finished_planned(self.folder, cases)

    def backend_envs(self) -> dict[str, Any]:
        """Where each worker's environment goes, by ``BACKEND:DEVICE`` (run.json)."""
        return self.folder.meta.setdefault("environment", {}).setdefault("backends", {})

    def message(self, env: dict[str, Any]) -> dict[str, Any]:
        """The fields of a group's command besides its cases (``env``: the worker's
        entry of :meth:`backend_envs`)."""
        return {
            "timing": self.timing.model_dump(),
            "tolerance": self.options.tolerance,
            "verify_only": self.options.verify_only,
            "peaks": env.get("peaks", {}),  # measured once per run (convbench.peaks)
            "speed_reference": self.folder.meta.get("speed_reference"),  # convbench.speed_probe
        }

    def result_of(self, event: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The row and samples of a worker's result event."""
        return event["row"], event.get("samples") or []

    def establish_speed(self, cases: list[Case]) -> None:
        """The machine's reference speed (:func:`convbench.speed_probe.establish`) into
        run.json, when CPU cases will be timed and the timing judges speed. A resumed run
        keeps the reference it started with."""
        timing = self.options.timing
        if self.options.verify_only or not timing.speed_tolerance or "speed_reference" in self.folder.meta:
            return
        if not any(c.device == "cpu" for c in cases):
            return
        from convbench.speed_probe import establish

        self.folder.meta["speed_reference"] = establish(self.options.cpus)
        self.folder.save_meta()

    def canary(self, at: str) -> None:
        """Time the canary (:mod:`convbench.canary`) into run.json; not for verify-only runs."""
        if self.options.verify_only:
            return
        from convbench.canary import run_canary

        self.folder.meta.setdefault("canary", []).append(run_canary(at, self.options.timing))
        self.folder.save_meta()

    def _record(self, row: dict[str, Any], samples: list[dict[str, Any]] | None = None) -> None:
        try:
            self.folder.add(row, samples or [])
        except ValueError as exc:  # a row this run folder cannot store: keep what it can
            known = {k: v for k, v in row.items() if k in CASE_COLUMNS}
            row = {**known, "status": "error", "reason": f"result row rejected ({exc}); its measurements are kept"}
            self.folder.add(row, samples or [])
        self.on_result(row)

    def _fail(self, cases: list[Case], status: str, reason: str, sink: Sink) -> None:
        for case in cases:
            row = empty_row(case)
            row.update(status=status, reason=reason, finished_at=now_iso())
            sink(row, [])

    def run_group(self, group: list[Case]) -> None:
        """Run one group; with ``processes: N``, N times in fresh workers, then merge."""
        if self.options.timing.processes == 1:
            self.run_group_once(group, self._record)  # each row stored as it comes
            return
        for runs in self.collect_group(group).values():
            self._record(*self._merged(runs, "process"))

    def collect_group(self, group: list[Case], into: dict[str, list[Run]] | None = None) -> dict[str, list[Run]]:
        """Each case's runs of one group (one, or with ``processes: N`` one per fresh
        worker), appended to ``into`` (a fresh dict by default) as each arrives."""
        n = self.options.timing.processes
        collected: dict[str, list[Run]] = {} if into is None else into
        ids = {c.case_id for c in group}

        def collect(row: dict[str, Any], samples: list[dict[str, Any]]) -> None:
            collected.setdefault(row["case_id"], []).append((row, samples))

        for _ in range(n):
            if n > 1:
                self.stop_worker()  # a fresh process for every repetition
            self.run_group_once(group, collect)
            if not any(runs[-1][0]["status"] == "ok" for cid, runs in collected.items() if cid in ids):
                break  # nothing was timed (skipped, failed): another process would say the same
        return collected

    def ensure_worker(self, case: Case) -> Worker:
        if self.worker is not None and self.worker_key == case.worker_key and self.worker.proc.poll() is None:
            return self.worker
        self.stop_worker()
        python = interpreter_for(case.backend, self.options.interpreters)
        if not Path(python).exists() and not _on_path(python):
            raise FileNotFoundError(
                f"interpreter {python!r} for backend {case.backend} not found; set it in the suite's "
                f"'interpreters' or in CONVBENCH_PYTHON_{case.backend.upper()}"
            )
        self.worker_count += 1
        log = self.folder.path / "logs" / f"worker-{case.backend}-{case.device}-{self.worker_count}.log"
        self.worker = Worker(python, case.backend, log, self.options.cpus, self.options.timing.allocator)
        self.worker_key = case.worker_key
        envs = self.backend_envs()
        peaks = envs.get(f"{case.backend}:{case.device}", {}).get("peaks")  # kept across worker restarts
        envs[f"{case.backend}:{case.device}"] = {**self.worker.hello.get("info", {}), "python": self.worker.hello.get("python"), "cpu_affinity": self.worker.hello.get("cpus"), "allocator": self.worker.hello.get("allocator")}
        if peaks:
            envs[f"{case.backend}:{case.device}"]["peaks"] = peaks
        self.folder.save_meta()
        return self.worker

    def stop_worker(self, kill: bool = False) -> None:
        if self.worker is not None:
            self.worker.close(kill=kill)
        self.worker = None
        self.worker_key = None

    def run_group_once(self, group: list[Case], sink: Sink) -> None:
        """Run one group in the current (or a fresh) worker; every case reaches ``sink``."""
        try:
            worker = self.ensure_worker(group[0])
        except FileNotFoundError as exc:
            self._fail(group, "skipped", str(exc), sink)
            return
        except WorkerError as exc:
            self.stop_worker(kill=True)
            self._fail(group, "error", f"worker for {group[0].backend} failed to start: {exc}", sink)
            return
        env = self.backend_envs().setdefault(f"{group[0].backend}:{group[0].device}", {})
        options = self.message(env)
        pending = {c.case_id: c for c in group}
        current: str | None = None
        timing: list[str] = []
        try:
            for event in worker.run(group, options, self.options.timeout * len(group), self.command):
                if event["event"] == "start":
                    current = event["case_id"]
                elif event["event"] == "timing":
                    timing = list(event["case_ids"])
                elif event["event"] == "peaks":
                    env.setdefault("peaks", {})[event["key"]] = event["peaks"]
                    self.folder.save_meta()
                else:
                    row, samples = self.result_of(event)
                    pending.pop(row["case_id"], None)
                    sink(row, samples)
        except WorkerError as exc:
            self.stop_worker(kill=True)
            # The case in progress fails; cases not yet started go to a fresh worker.
            # A failure while the group is timed interleaved hits every case being timed.
            failed = [cid for cid in (timing or [current or next(iter(pending))]) if cid in pending]
            self._fail([pending.pop(cid) for cid in failed], "error", f"worker failed: {exc}", sink)
            if pending and not timing:
                self.run_group_once(list(pending.values()), sink)
        except BaseException:
            self.stop_worker(kill=True)
            raise


def _on_path(program: str) -> bool:
    from shutil import which

    return which(program) is not None
