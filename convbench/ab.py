"""``convbench ab``: one suite in two environments, both workers alive, timed round by round.

BASE and NEW are two Python interpreters (e.g. two virtual environments with different
framework versions, or different versions of a backend plugin). For each case group the
runner starts one worker per side, has each build and verify the group's cases and hold
them (the worker's ``prepare`` command), then times every held case of both sides in
shuffled rounds (:func:`convbench.timing.measure_interleaved` over samplers that ask a
worker for ``n`` iterations): drift and neighbours hit both sides alike, and the per-round
ratio NEW/BASE of each case is the evidence. Only one side computes at a time; the other
waits on its pipe. With ``pairs`` > 1 this is repeated in fresh pairs of workers (every
pair builds and verifies again): two processes of the same code can differ by more than
their rounds show, and only another pair can reveal it.

Verdicts (:func:`ab_comparison`) use the words, thresholds and exit codes of ``compare``
(:mod:`convbench.compare`), from the paired ratios (:func:`paired_test`): with one pair,
the median ratio with its order-statistic CI and the Wilcoxon signed-rank test; with
several, each pair's median pooled by a random-effects model, so that pairs which disagree
widen the interval. Both sides share one machine at one time, so there is no canary to
consult, and contention hits both sides' rounds alike: a significant change stands, and a
contended case is ``same`` only when its interval rules out a change beyond the threshold,
else ``inconclusive`` (:func:`paired_doubt`). The suite-level verdict pools the cases
per pair, then across pairs (:func:`suite_verdict`).

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

from convbench.cases import KEY_FIELDS, Case
from convbench.compare import (
    DEFAULT_FAIL_ON,
    TABLE_COLUMNS,
    VERDICTS,
    Comparison,
    _contention_note,
    _flag,
    decide,
    pooled_verdict,
    run_info,
    threshold_for,
)
from convbench.contention import Monitor, Reader
from convbench.ratio_stats import RatioTest, median_se, paired_test, random_effects, z_value
from convbench.results import SCHEMA_ID, RunFolder, empty_row, now_iso
from convbench.rows import rates, sample_rows, timing_fields
from convbench.run_record import as_record
from convbench.runner import RunOptions, Worker, WorkerError, group_cases, merge_processes
from convbench.timing import Guard, SamplerError, measure_interleaved

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


class AbRunner:
    """Runs cases on both sides into one :class:`RunFolder` (rows tagged ``side``)."""

    def __init__(
        self, folder: RunFolder, options: RunOptions, pythons: dict[str, str],
        on_result: Callable[[dict[str, Any]], None] | None = None, seed: int = 0, pairs: int = 1,
    ) -> None:  # fmt: skip
        if pairs < 1:
            raise ValueError(f"pairs must be at least 1, got {pairs}")
        self.folder, self.options, self.pythons, self.seed, self.pairs = folder, options, pythons, seed, pairs
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
    def _prepare(self, side: str, group: list[Case], record: bool = True) -> dict[str, dict[str, Any]]:
        """Build and verify ``group`` on one side; record what did not verify (unless
        ``record`` is false: a later pair of a group, whose failures the pair reports);
        return the verified rows (untimed) by case id."""
        try:
            worker = self._worker(side, group[0])
        except (WorkerError, OSError) as exc:
            self._stop(side, kill=True)
            if record:
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
                    if record:
                        self._record({**event["row"], "side": side})
        except WorkerError as exc:
            self._stop(side, kill=True)
            if record:
                self._fail(side, [*pending.values(), *(c for c in group if c.case_id in held)], f"{side} worker failed: {exc}")
            return {}
        return held

    def run_group(self, group: list[Case]) -> None:
        """Time ``group`` in ``pairs`` fresh worker pairs, then record one row per case and
        side from the pooled rounds (:func:`convbench.runner.merge_processes`; each
        sample's ``process`` says which pair it came from)."""
        held = {side: self._prepare(side, group) for side in SIDES}
        both = [c.case_id for c in group if all(c.case_id in held[s] for s in SIDES)]
        for side in SIDES:  # verified on one side only: recorded untimed
            for cid, row in held[side].items():
                if cid not in both:
                    self._record({**row, "reason": "not timed: the other side did not verify this case"})
        if not both:
            self._release()
            return
        timed = [c for c in group if c.case_id in both]
        first = held
        collected: dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]]] = {_member(s, cid): [] for cid in both for s in SIDES}
        ended: str | None = None
        for pair in range(self.pairs):
            if pair:  # a fresh pair of processes: what differs between processes is evidence too
                for side in SIDES:
                    self._stop(side)
                held = {side: self._prepare(side, timed, record=False) for side in SIDES}
            outcome, ended = self._time_pair(timed, held, pair)
            for name, result in outcome.items():
                collected[name].append(result)
            self._release()
            if ended:  # a side failed: later pairs would only repeat the failure
                break
        confidence = self.options.timing.confidence
        for cid in both:
            for side in SIDES:
                runs = collected[_member(side, cid)]
                if not runs:
                    self._record({**first[side][cid], "reason": f"not timed: {ended}", "timer": None})
                    continue
                row, samples = merge_processes(runs, confidence)
                self._record({**row, "side": side}, samples)

    def _time_pair(
        self, timed: list[Case], held: dict[str, dict[str, dict[str, Any]]], pair: int
    ) -> tuple[dict[str, tuple[dict[str, Any], list[dict[str, Any]]]], str | None]:
        """One pair's rounds: ``(row, samples)`` per member that has a result, and why a
        side failed (None: neither did)."""
        out: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        for side in SIDES:  # a worker of this pair failed to start or to prepare a case
            lost = [c for c in timed if c.case_id not in held[side]]
            if lost:
                why = f"{side} worker failed in pair {pair + 1}: it did not prepare {len(lost)} case(s) (see its log)"
                for c in timed:
                    out[_member(side, c.case_id)] = ({**empty_row(c), "side": side, "status": "error", "reason": why}, [])
                self._stop(side, kill=True)
                return out, why
        ids = [c.case_id for c in timed]
        timing = self.options.timing
        baton = _Baton()
        samplers = {
            _member(side, cid): _RemoteSampler(self.workers[side], cid, self.options.timeout, side, baton)  # type: ignore[arg-type]
            for cid in ids for side in SIDES
        }  # fmt: skip
        pairs = {_member("new", cid): _member("base", cid) for cid in ids}
        pids = [w.proc.pid for w in self.workers.values() if w is not None]
        guard = Guard.for_case(Monitor(Reader(pids=pids), timing.rule()), timing, timed[0].device)
        try:
            result = measure_interleaved(
                samplers, timing, _member("base", ids[0]), guard=guard, baselines=pairs, seed=self.seed + pair,
                faults={name: sampler.fault_count for name, sampler in samplers.items()}, same_inner=True,
            )  # fmt: skip
        except SamplerError as exc:  # a side died while warming up or calibrating: nothing was timed
            side = "base" if str(exc).startswith("base") else "new"
            for cid in ids:
                out[_member(side, cid)] = ({**held[side][cid], "status": "error", "reason": str(exc), "timer": None}, [])
            self._stop(side, kill=True)
            return out, str(exc)
        dead = {name.split("|", 1)[0]: why for name, why in result.failed.items()}
        for cid in ids:
            for side in SIDES:
                row = dict(held[side][cid])
                name = _member(side, cid)
                if side in dead:
                    row.update(status="error", reason=dead[side], timer=None)
                    out[name] = (row, [])
                    continue
                m = result.members.get(name)
                if m is None:
                    other = next(iter(dead.values()), "no round completed")
                    row.update(status="error", reason=f"not timed: {other}")
                    out[name] = (row, [])
                    continue
                row.update(timing_fields(m, row.get("timer") or "host_wall_sync"))
                row.update(rates(row), rounds=result.rounds, baseline="base" if side == "new" else None)
                ratios = result.ratios.get(name)
                if ratios is not None and name in result.ratio_stats:
                    rs = result.ratio_stats[name]
                    row.update(ratio=rs.median, ratio_ci_low=rs.ci_low, ratio_ci_high=rs.ci_high)
                if dead:
                    row["reason"] = f"timing ended early: {next(iter(dead.values()))}; {m.stats.n} rounds kept"
                out[name] = (row, sample_rows(cid, m, ratios, side))
        for side in dead:
            self._stop(side, kill=True)
        return out, next(iter(dead.values()), None)

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
def paired_doubt(decided: tuple[str, str], test: RatioTest, row: dict[str, Any], alpha: float, pairs: int = 2) -> tuple[str, str]:
    """Contention in ``ab``: both sides were timed in the same rounds, so a load hit both
    alike, and with two or more process ``pairs`` a significant change stands (its reason
    says the rounds were contended); with one pair it is ``inconclusive`` (a contended
    pair's processes can differ in ways its rounds cannot show). A contended case without
    a change is ``same`` only when its ``1 - alpha`` paired CI rules out a change beyond
    the threshold; else ``inconclusive``. Too few rounds: inconclusive."""
    verdict, reason = decided
    if reason.startswith("not tested"):
        return "inconclusive", reason
    note = row.get("_contended")
    if not note:
        return decided
    if verdict in ("slower", "faster") and pairs < 2:
        return "inconclusive", f"{reason}, but {note}, in one process pair only"
    if verdict in ("slower", "faster"):
        return verdict, f"{reason} (contended while timed, in both sides' rounds alike)"
    t = row["threshold"]
    low, high = test.bounds(0.0, 1 - alpha)
    if 1 / (1 + t) <= low and high <= 1 + t:
        return "same", f"{reason}; contended while timed, but the paired CI rules out a change beyond {t:.1%}"
    return "inconclusive", f"{reason}, but {note}: the paired CI cannot rule out a change beyond {t:.1%}"


def suite_verdict(rows: list[dict[str, Any]], tests: dict[int, RatioTest], by_pair: dict[int, dict[Any, np.ndarray]], threshold: float, alpha: float) -> dict[str, Any]:
    """The suite-level verdict of ``ab``, pooled over the tested cases.

    With two or more pairs, per pair the mean over cases of each case's median log ratio,
    with its standard error from the cases' own; those per-pair means pooled by
    :func:`random_effects` (a shift that one pair of processes shares across its cases
    widens the interval, as it should), and a ``1 - alpha`` z-interval. With one pair,
    :func:`convbench.compare.pooled_verdict` (cases as observations, a contended majority
    makes a change inconclusive). With a contended majority, ``same`` needs an interval
    that rules out a change beyond the threshold, as in :func:`paired_doubt`.
    """
    tested = [i for i in tests if rows[i].get("_tested")]
    pairs = sorted({p for i in tested for p, x in by_pair.get(i, {}).items() if x.size >= 2}, key=str)
    contended = sum(1 for i in tested if rows[i].get("_contended"))
    if len(pairs) < 2:  # one pair: as compare pools (a contended majority doubts a change)
        out = pooled_verdict(rows, tests, threshold, alpha, {})
    else:
        means, ses = [], []
        for p in pairs:
            parts = [by_pair[i][p] for i in tested if by_pair.get(i, {}).get(p) is not None and by_pair[i][p].size >= 2]
            means.append(float(np.mean([np.median(x) for x in parts])))
            ses.append(math.sqrt(sum(median_se(x) ** 2 for x in parts)) / len(parts))
        mean, se, tau = random_effects(means, ses)
        half = z_value(1 - alpha) * se
        ratio, low, high = math.exp(mean), math.exp(mean - half), math.exp(mean + half)
        change = (f"geometric mean {(ratio - 1) * 100:+.1f}% [{(low - 1) * 100:+.1f}%, {(high - 1) * 100:+.1f}%] over "
                  f"{len(tested)} cases in {len(pairs)} process pairs (between pairs ±{math.expm1(tau):.1%})")  # fmt: skip
        up, down = 1 + threshold, 1 / (1 + threshold)
        verdict = "slower" if ratio > up and low > 1 else "faster" if ratio < down and high < 1 else "same"
        reason = f"{change}: {verdict}" if verdict != "same" else f"{change}: no change beyond {threshold:.1%}"
        out = {"ratio": ratio, "ci_low": low, "ci_high": high, "cases": len(tested), "pairs": len(pairs), "confidence": 1 - alpha, "verdict": verdict, "reason": reason}
    if out.get("verdict") == "same" and contended * 2 > max(1, len(tested)) and out.get("ci_low") is not None:
        up = 1 + threshold
        if not (1 / up <= out["ci_low"] and out["ci_high"] <= up):
            out.update(verdict="inconclusive", reason=f"{out['reason']}, but {contended} of {len(tested)} cases were contended and the interval cannot rule out a change beyond {threshold:.1%}")
    return out


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
    new_ratios: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for cid, g in kept[kept["side"] == "new"].groupby("case_id") if len(kept) else ():
        g = g[g["ratio"].notna()]
        pair = g["process"] if "process" in g.columns else pd.Series(0, index=g.index)
        new_ratios[str(cid)] = (g["ratio"].to_numpy(dtype=float), pair.fillna(0).to_numpy())
    rows: list[dict[str, Any]] = []
    tests: dict[int, RatioTest] = {}
    by_pair: dict[int, dict[Any, np.ndarray]] = {}  #: tested row -> pair -> its log ratios
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
        ratios, pairs = new_ratios.get(str(cid), (np.empty(0), np.empty(0)))
        if decided is None and ratios.size < 2:
            decided = ("inconclusive", f"not tested: {ratios.size} paired rounds (need 2 or more)")
        if decided is None:
            test = paired_test(ratios, groups=pairs)
            tests[len(rows)] = test
            by_pair[len(rows)] = {p: np.log(ratios[(pairs == p) & (ratios > 0)]) for p in dict.fromkeys(pairs.tolist())}
            row.update(ratio=test.ratio, ci_low=test.ci_low, ci_high=test.ci_high, p_value=test.p_value, base_n=test.n_base, new_n=test.n_new)
            row.update(_tested=True, _contended=_contention_note(b, n))
            adj = test.bounds(0.0, 1 - alpha)
            row["adj_ci_low"], row["adj_ci_high"] = adj
            tested_pairs = sum(1 for x in by_pair[len(rows)].values() if x.size >= 2)
            decided = paired_doubt(decide(test, row["threshold"], alpha), test, row, alpha, tested_pairs)
        row["verdict"], row["reason"] = decided
        rows.append(row)
    suite = suite_verdict(rows, tests, by_pair, threshold, alpha)
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
