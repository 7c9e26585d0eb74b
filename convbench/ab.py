"""``convbench ab``: one suite in two environments, both workers alive, timed round by round.

BASE and NEW are two Python interpreters (e.g. two virtual environments with different
framework versions, or different versions of a backend plugin). For each case group the
runner starts one worker per side, has each build and verify the group's cases and hold
them (the worker's ``prepare`` command), then times every held case of both sides in
shuffled rounds (:func:`convbench.timing.measure_interleaved` over samplers that ask a
worker for ``n`` iterations): drift and neighbours hit both sides alike, and the per-round
ratio NEW/BASE of each case is the evidence. Only one side computes at a time; the other
waits on its pipe.

Verdicts (:func:`ab_comparison`) use the words, thresholds and exit codes of ``compare``
(:mod:`convbench.compare`), from the paired ratios: the median ratio with its
order-statistic CI, and the two-sided Wilcoxon signed-rank test of the log ratios. Both
sides share one machine at one time, so there is no canary to consult; contention still
makes a verdict inconclusive.

One run folder holds both sides: every row and sample is tagged ``side`` (``base`` or
``new``); run.json's ``ab`` names the interpreters.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from convbench.cases import KEY_FIELDS, Case
from convbench.compare import (
    DEFAULT_FAIL_ON,
    TABLE_COLUMNS,
    VERDICTS,
    Comparison,
    RatioTest,
    _contention_note,
    _flag,
    decide,
    doubt,
    pooled_verdict,
    run_info,
    threshold_for,
)
from convbench.contention import Monitor, Reader
from convbench.results import SCHEMA_ID, RunFolder, empty_row, now_iso
from convbench.rows import rates, sample_rows, timing_fields
from convbench.run_record import as_record
from convbench.runner import RunOptions, Worker, WorkerError, group_cases
from convbench.timing import Guard, SamplerError, measure_interleaved, summarize

SIDES = ("base", "new")
PROBE_TIMEOUT = 180.0
#: Seconds a side is left idle before the other side samples: a worker's OpenMP threads
#: keep spinning for several milliseconds after its last parallel region (measured here:
#: about 8 ms of CPU), and would otherwise take a core from the side being timed.
SETTLE = 0.015


class AbError(Exception):
    """Bad input to ``ab``: an interpreter that is missing or runs another convbench."""


def resolve_python(spec: str, option: str) -> str:
    """The interpreter named by ``spec``: a file, a virtual-environment folder (its
    ``bin/python``), or a program on PATH; raises AbError naming ``option``."""
    path = Path(spec)
    if path.is_dir():
        for candidate in (path / "bin" / "python", path / "Scripts" / "python.exe"):
            if candidate.exists():
                return str(candidate)
        raise AbError(f"{option} {spec}: a folder without bin/python; expected an interpreter or a virtual environment")
    if path.exists():
        return str(path)
    found = shutil.which(spec)
    if found:
        return found
    raise AbError(f"{option} {spec}: no such interpreter or virtual environment")


def probe(python: str, option: str) -> dict[str, Any]:
    """The worker's hello in ``python`` (no backend loaded); AbError when it cannot run
    convbench or runs one whose result schema differs from this one's."""
    try:
        out = subprocess.run(
            [python, "-m", "convbench.worker", "--backend", "reference", "--info"],
            capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False,
        )  # fmt: skip
        hello = json.loads(out.stdout.splitlines()[0])
    except (OSError, subprocess.TimeoutExpired, IndexError, json.JSONDecodeError) as exc:
        tail = locals().get("out")
        detail = (tail.stderr.strip().splitlines() or [""])[-1] if tail is not None else str(exc)
        raise AbError(f"{option} {python}: cannot start convbench's worker ({detail or exc}); install convbench there") from None
    if hello.get("schema") != SCHEMA_ID:
        raise AbError(
            f"{option} {python}: its convbench {hello.get('convbench', '(unknown)')} writes another result schema "
            f"({hello.get('schema')}, this one {SCHEMA_ID}): install the same convbench version on both sides"
        )
    return hello


class _Baton:
    """Which worker sampled last, and when it finished (for SETTLE)."""

    def __init__(self) -> None:
        self.last: Worker | None = None
        self.at = 0.0

    def take(self, worker: Worker) -> None:
        if self.last is not None and self.last is not worker:
            rest = SETTLE - (time.monotonic() - self.at)
            if rest > 0:
                time.sleep(rest)
        self.last = worker

    def done(self) -> None:
        self.at = time.monotonic()


class _RemoteSampler:
    """A sampler that asks a worker to time ``n`` iterations of one held case."""

    def __init__(self, worker: Worker, case_id: str, timeout: float, side: str, baton: _Baton) -> None:
        self.worker, self.case_id, self.timeout, self.side, self.baton = worker, case_id, timeout, side, baton
        self.faults: float | None = 0.0  #: page faults the worker reported for this case's samples so far

    def fault_count(self) -> float | None:
        """The page faults of this case's samples so far (None: the worker did not say)."""
        return self.faults

    def __call__(self, n: int) -> float:
        self.baton.take(self.worker)
        try:
            self.worker.send({"cmd": "sample", "case_id": self.case_id, "n": int(n)})
            event = self.worker.next_event(self.timeout)
        except WorkerError as exc:
            raise SamplerError(f"{self.side} worker failed: {exc}") from None
        finally:
            self.baton.done()
        if event.get("event") != "sample":
            raise SamplerError(f"{self.side} worker: {event.get('reason') or event}")
        reported = event.get("faults")
        self.faults = None if reported is None or self.faults is None else self.faults + float(reported)
        return float(event["seconds"])


def _member(side: str, case_id: str) -> str:
    return f"{side}|{case_id}"


def _other(side: str) -> str:
    return "new" if side == "base" else "base"


class AbRunner:
    """Runs cases on both sides into one :class:`RunFolder` (rows tagged ``side``)."""

    def __init__(self, folder: RunFolder, options: RunOptions, pythons: dict[str, str], on_result: Callable[[dict[str, Any]], None] | None = None, seed: int = 0) -> None:
        self.folder, self.options, self.pythons, self.seed = folder, options, pythons, seed
        self.on_result = on_result or (lambda row: None)
        self.workers: dict[str, Worker | None] = dict.fromkeys(SIDES)
        self.keys: dict[str, tuple | None] = dict.fromkeys(SIDES)
        self.count = 0

    def run(self, cases: list[Case]) -> None:
        from convbench.canary import run_canary

        try:
            self.folder.meta.setdefault("canary", []).append(run_canary("start", self.options.timing))
            for group in group_cases(cases):
                self.run_group(group)
            self.folder.meta["canary"].append(run_canary("end", self.options.timing))
            self.folder.save_meta()
        finally:
            for side in SIDES:
                self._stop(side, kill=True)

    # -- workers ----------------------------------------------------------------------
    def _worker(self, side: str, case: Case) -> Worker:
        w = self.workers[side]
        if w is not None and self.keys[side] == case.worker_key and w.proc.poll() is None:
            return w
        self._stop(side)
        self.count += 1
        log = self.folder.path / "logs" / f"worker-{side}-{case.backend}-{case.device}-{self.count}.log"
        w = Worker(self.pythons[side], case.backend, log, self.options.cpus, self.options.timing.allocator)
        self.workers[side], self.keys[side] = w, case.worker_key
        envs = self.folder.meta.setdefault("environment", {}).setdefault("backends", {})
        envs[f"{side}:{case.backend}:{case.device}"] = {**w.hello.get("info", {}), "python": w.hello.get("python"), "cpu_affinity": w.hello.get("cpus"), "allocator": w.hello.get("allocator")}
        self.folder.save_meta()
        return w

    def _stop(self, side: str, kill: bool = False) -> None:
        w = self.workers[side]
        if w is not None:
            w.close(kill=kill)
        self.workers[side], self.keys[side] = None, None

    def _record(self, row: dict[str, Any], samples: list[dict[str, Any]] | None = None) -> None:
        row.setdefault("finished_at", now_iso())
        self.folder.add(row, samples or [])
        self.on_result(row)

    def _fail(self, side: str, cases: list[Case], reason: str) -> None:
        for case in cases:
            row = empty_row(case)
            row.update(status="error", reason=reason, side=side)
            self._record(row)

    # -- one group ----------------------------------------------------------------------
    def _prepare(self, side: str, group: list[Case]) -> dict[str, dict[str, Any]]:
        """Build and verify ``group`` on one side; record what did not verify; return
        the verified rows (untimed) by case id."""
        try:
            worker = self._worker(side, group[0])
        except (WorkerError, OSError) as exc:
            self._stop(side, kill=True)
            self._fail(side, group, f"{side} worker for {group[0].backend} failed to start: {exc}")
            return {}
        held: dict[str, dict[str, Any]] = {}
        message = {"cmd": "prepare", "cases": [c.model_dump() for c in group], "timing": self.options.timing.model_dump(), "tolerance": self.options.tolerance}
        pending = {c.case_id: c for c in group}
        try:
            worker.send(message)
            while True:
                event = worker.next_event(self.options.timeout * len(group))
                kind = event.get("event")
                if kind == "done":
                    break
                if kind == "prepared":
                    held[event["case_id"]] = {**event["row"], "side": side}
                    pending.pop(event["case_id"], None)
                elif kind == "result":
                    pending.pop(event["row"]["case_id"], None)
                    self._record({**event["row"], "side": side})
        except WorkerError as exc:
            self._stop(side, kill=True)
            self._fail(side, [*pending.values(), *(c for c in group if c.case_id in held)], f"{side} worker failed: {exc}")
            return {}
        return held

    def run_group(self, group: list[Case]) -> None:
        held = {side: self._prepare(side, group) for side in SIDES}
        both = [c.case_id for c in group if all(c.case_id in held[s] for s in SIDES)]
        for side in SIDES:  # verified on one side only: recorded untimed
            for cid, row in held[side].items():
                if cid not in both:
                    self._record({**row, "reason": "not timed: the other side did not verify this case"})
        if not both:
            self._release()
            return
        timing = self.options.timing
        baton = _Baton()
        samplers = {
            _member(side, cid): _RemoteSampler(self.workers[side], cid, self.options.timeout, side, baton)  # type: ignore[arg-type]
            for cid in both for side in SIDES
        }  # fmt: skip
        pairs = {_member("new", cid): _member("base", cid) for cid in both}
        pids = [w.proc.pid for w in self.workers.values() if w is not None]
        guard = Guard.for_case(Monitor(Reader(pids=pids), timing.rule()), timing, group[0].device)
        try:
            result = measure_interleaved(
                samplers, timing, _member("base", both[0]), guard=guard, baselines=pairs, seed=self.seed,
                faults={name: sampler.fault_count for name, sampler in samplers.items()},
            )  # fmt: skip
        except SamplerError as exc:  # a side died while warming up or calibrating: nothing was timed
            side = "base" if str(exc).startswith("base") else "new"
            for cid in both:
                self._record({**held[side][cid], "status": "error", "reason": str(exc), "timer": None})
                self._record({**held[_other(side)][cid], "reason": f"not timed: {exc}", "timer": None})
            self._stop(side, kill=True)
            self._release()
            return
        dead = {name.split("|", 1)[0]: why for name, why in result.failed.items()}
        for cid in both:
            for side in SIDES:
                row = dict(held[side][cid])
                if side in dead:
                    row.update(status="error", reason=dead[side], timer=None)
                    self._record(row)
                    continue
                m = result.members.get(_member(side, cid))
                if m is None:
                    other = next(iter(dead.values()), "no round completed")
                    row.update(status="error", reason=f"not timed: {other}")
                    self._record(row)
                    continue
                row.update(timing_fields(m, row.get("timer") or "host_wall_sync"))
                row.update(rates(row), rounds=result.rounds, baseline="base" if side == "new" else None)
                ratios = result.ratios.get(_member(side, cid))
                if ratios is not None and (_member(side, cid) in result.ratio_stats):
                    rs = result.ratio_stats[_member(side, cid)]
                    row.update(ratio=rs.median, ratio_ci_low=rs.ci_low, ratio_ci_high=rs.ci_high)
                if dead:
                    row["reason"] = f"timing ended early: {next(iter(dead.values()))}; {m.stats.n} rounds kept"
                self._record(row, sample_rows(cid, m, ratios, side))
        for side in dead:
            self._stop(side, kill=True)
        self._release()

    def _release(self) -> None:
        for side in SIDES:
            w = self.workers[side]
            if w is None:
                continue
            try:
                w.send({"cmd": "release"})
                while w.next_event(60).get("event") != "done":
                    pass
            except WorkerError:
                self._stop(side, kill=True)


# --------------------------------------------------------------------------- verdicts
def paired_test(ratios: Sequence[float], confidence: float = 0.95) -> RatioTest:
    """The paired test of per-round ratios NEW/BASE: their median with its order-statistic
    CI, the Wilcoxon signed-rank p-value of the log ratios against 0, the smallest
    p-value ``n`` rounds allow, and the standard error of the median of log ratios."""
    r = np.asarray([x for x in ratios if x > 0 and math.isfinite(x)], dtype=np.float64)
    n = int(r.size)
    if n < 1:
        raise ValueError("paired_test needs at least one ratio")
    stats = summarize(r.tolist(), confidence)
    logs = np.log(r)
    p = float(wilcoxon(logs).pvalue) if n >= 2 and np.any(logs != 0) else 1.0
    se = 1.2533 * float(np.std(logs, ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return RatioTest(stats.median, stats.ci_low, stats.ci_high, p, n, n, min(1.0, 2.0 ** (1 - n)), se)


def ab_comparison(
    cases: pd.DataFrame,
    samples: pd.DataFrame,
    threshold: float = 0.05,
    alpha: float = 0.01,
    thresholds: list[tuple[str, float]] | None = None,
    fail_on: Sequence[str] = DEFAULT_FAIL_ON,
    inconclusive_ok: bool = False,
    meta: dict[str, Any] | None = None,
) -> Comparison:
    """The verdict of every case of an ab run folder (rules in the module docstring)."""
    from convbench.compare import _verdict_by_status

    unknown = set(fail_on) - set(VERDICTS)
    if unknown:
        raise ValueError(f"unknown verdicts in fail_on: {sorted(unknown)}")
    by_side = {side: cases[cases["side"] == side].set_index("case_id", drop=False) for side in SIDES}
    kept = samples[samples["kept"].map(lambda k: k is not False and k is not np.False_)] if len(samples) else samples
    new_ratios = {cid: g["ratio"].dropna().to_numpy(dtype=float) for cid, g in kept[kept["side"] == "new"].groupby("case_id")} if len(kept) else {}
    rows: list[dict[str, Any]] = []
    tests: dict[int, RatioTest] = {}
    for cid in dict.fromkeys([*by_side["base"].index, *by_side["new"].index]):
        b = by_side["base"].loc[cid] if cid in by_side["base"].index else None
        n = by_side["new"].loc[cid] if cid in by_side["new"].index else None
        ref = n if n is not None else b
        row: dict[str, Any] = {f: ref.get(f) for f in KEY_FIELDS}
        row.update(
            case_id=cid, suite=ref.get("suite"), threshold=threshold_for(str(cid), ref.get("suite"), threshold, thresholds),
            base_status=None if b is None else b["status"], new_status=None if n is None else n["status"],
            base_median=None if b is None else b.get("median"), new_median=None if n is None else n.get("median"),
            base_contended=None if b is None else _flag(b.get("contended")), new_contended=None if n is None else _flag(n.get("contended")),
        )  # fmt: skip
        died = [f"{side}: {r['reason']}" for side, r in (("BASE", b), ("NEW", n)) if r is not None and r["status"] == "error" and "worker failed" in str(r.get("reason"))]
        decided = ("failed", "; ".join(died)) if died else _verdict_by_status(b, n)
        ratios = new_ratios.get(cid, np.empty(0))
        if decided is None and ratios.size < 2:
            decided = ("inconclusive", f"not tested: {ratios.size} paired rounds (need 2 or more)")
        if decided is None:
            test = paired_test(ratios)
            tests[len(rows)] = test
            row.update(ratio=test.ratio, ci_low=test.ci_low, ci_high=test.ci_high, p_value=test.p_value, base_n=test.n_base, new_n=test.n_new)
            row.update(_tested=True, _contended=_contention_note(b, n))
            adj = test.bounds(0.0, 1 - alpha)
            row["adj_ci_low"], row["adj_ci_high"] = adj
            decided = doubt(decide(test, row["threshold"], alpha), test.ratio, row, {})
        row["verdict"], row["reason"] = decided
        rows.append(row)
    suite = pooled_verdict(rows, tests, threshold, alpha, {})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    order = {v: i for i, v in enumerate(VERDICTS)}
    table = table.assign(_o=table["verdict"].map(order), _r=-table["ratio"].astype(float).fillna(1.0))
    table = table.sort_values(["_o", "_r", "case_id"], kind="stable").drop(columns=["_o", "_r"]).reset_index(drop=True)
    info = [run_info(meta)] if meta else []
    sides = (as_record(meta).ab if meta else None) or {}
    base_runs = [{**i, "name": f"{i.get('name') or 'ab'} base ({sides.get('base')})"} for i in info]
    new_runs = [{**i, "name": f"{i.get('name') or 'ab'} new ({sides.get('new')})"} for i in info]
    return Comparison(
        table=table, base_runs=base_runs, new_runs=new_runs, threshold=threshold, alpha=alpha, fail_on=tuple(fail_on),
        run_noise=False, suite=suite, inconclusive_ok=inconclusive_ok, method="ab",
    )  # fmt: skip
