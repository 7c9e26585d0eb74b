"""Run-to-run and within-run comparison: the verdict rules and the tables they fill.

Pure functions over the DataFrames of :func:`convbench.results.load` (``cases`` and, with
``samples=True``, the raw per-iteration samples); :func:`load_side` and
:func:`compare_paths` read run folders. The statistics live in
:mod:`convbench.ratio_stats`, the environment difference in
:mod:`convbench.run_environment`, rendering in :mod:`convbench.compare_render`.

Run against run (:func:`compare_runs`)
    Cases are joined on ``case_id`` (the key fields, :data:`convbench.cases.KEY_FIELDS`).
    For a case timed on both sides (see :func:`ratio_test`):

    * ``ratio`` = median of NEW's samples / median of BASE's samples (> 1: NEW is slower);
    * ``[ci_low, ci_high]``: 95% percentile-bootstrap CI of that ratio, each side
      resampled on its own (``n_boot`` replicates, seeded from ``seed`` and the case id).
      A side merged from several runs is resampled in two stages (runs, then samples
      within each drawn run), so a shift between runs widens the CI instead of passing
      for a change;
    * ``p_value``: two-sided Mann-Whitney U test of the two sides' samples (scipy);
    * ``[adj_ci_low, adj_ci_high]``: that CI taken to level ``1 - alpha`` and widened
      for run-to-run noise (see below; :meth:`RatioTest.bounds`);
    * the verdict (:func:`decide`): ``slower`` when the change is significant at
      ``alpha`` (``p_value < alpha`` AND ``adj_ci_low > 1``) AND its estimate is beyond
      the threshold (``ratio > 1 + threshold``); ``faster`` when ``p_value < alpha``,
      ``adj_ci_high < 1`` and ``ratio < 1 / (1 + threshold)`` (the same margin on a log
      scale); else ``same``. Identical distributions are flagged at most at rate
      ``alpha`` (in practice far less, since the estimate must also clear the
      threshold); a true change at the threshold is flagged about half the time, one of
      twice the threshold almost always once the interval is narrower than the
      threshold. (Requiring the whole CI beyond the threshold instead would miss a 10%
      slowdown under 5% noise about one time in five with 30 samples: docs/compare.md.)

    Statuses decide first (``error`` and ``mismatch`` are *failures*):

    * only in NEW: ``added`` (``failed`` if it fails); only in BASE: ``removed``;
    * fails in NEW but not in BASE (ok or skipped there): ``failed``;
    * ok in NEW, skipped in BASE: ``added``; ok in BASE, skipped in NEW: ``removed``;
    * failing on both sides, skipped on both, or fixed (fails in BASE, ok in NEW):
      ``same``, with the reason (nothing to compare);
    * ok on both sides but fewer than 2 samples on a side: ``same``, "not tested".

    A side merged from several runs takes, per case, the worst status (mismatch, error,
    ok, skipped, in that order) and pools the samples.

Run-to-run noise
    Samples of one case are taken within seconds of each other, so they share the state
    of the machine at that moment; two runs of the same code on a shared VM can differ
    by far more than the samples within either run suggest. With one run per side the
    samples cannot show this, but the other cases can: with ``run_noise`` (default), the
    spread of log(ratio) across the cases of a backend and device that the within-run
    standard errors do not explain is taken as run-to-run noise (:func:`estimate_noise`,
    robust to a minority of changed cases and blind to a shift shared by all), and the
    interval of every case is widened by it (``adj_ci_low``/``adj_ci_high``, column
    ``run_noise`` the noise as a relative sd) before the verdict. Where the runs agree
    as well as their samples do, the estimate is nil and nothing changes. Several runs
    per side (two-stage bootstrap) measure the same thing directly.

Within a run (:func:`within_run`)
    Each variant (``by="variant"``) or backend (``by="backend"``) against a baseline on
    the same case: the per-round interleaved ratio and its CI (cases.parquet ``ratio``,
    ``ratio_ci_low``, ``ratio_ci_high``) where the case was interleaved against that
    baseline, else the ratio of medians with a bootstrap CI from the raw samples when
    given, else the ratio of medians alone.
"""

from __future__ import annotations

import fnmatch
import json
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from convbench.cases import KEY_FIELDS
from convbench.display import is_number
from convbench.ratio_stats import N_BOOT, RatioTest, estimate_noise, ratio_test
from convbench.results import ResultsError, find_runs, read_meta
from convbench.run_environment import environment_diff, run_info

__all__ = [
    "FAILED_STATUSES",
    "VERDICTS",
    "Comparison",
    "Side",
    "compare_paths",
    "compare_runs",
    "decide",
    "load_side",
    "threshold_for",
    "within_run",
]

#: Every verdict, in display order (regressions first).
VERDICTS = ("failed", "slower", "inconclusive", "faster", "added", "removed", "same")
#: Exit codes of compare and ab: no regression, a regression, bad input, inconclusive.
EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
#: Fewest tested cases the suite-level (pooled) verdict needs.
MIN_POOLED_CASES = 3
FAILED_STATUSES = frozenset({"error", "mismatch"})
#: A side merged from several runs takes the first of these statuses that any run has.
STATUS_PRIORITY = ("mismatch", "error", "ok", "skipped")
DEFAULT_FAIL_ON = ("slower", "failed")

CASE_REQUIRED = ("case_id", "status", *KEY_FIELDS)
SAMPLE_REQUIRED = ("case_id", "seconds")


# --------------------------------------------------------------------------- verdicts
def decide(test: RatioTest, threshold: float, alpha: float, noise: float = 0.0) -> tuple[str, str]:
    """``(verdict, reason)`` of a :class:`RatioTest` (rule in the module docstring);
    ``noise`` widens the CI for run-to-run noise (:meth:`RatioTest.bounds`)."""
    up, down = 1 + threshold, 1 / (1 + threshold)
    low, high = test.bounds(noise, 1 - alpha)
    change = f"{(test.ratio - 1) * 100:+.1f}% [{(test.ci_low - 1) * 100:+.1f}%, {(test.ci_high - 1) * 100:+.1f}%], p={test.p_value:.2g}"
    significant = test.p_value < alpha
    if significant and test.ratio > up and low > 1:
        return "slower", f"{change}: slower by more than {threshold:.1%}"
    if significant and test.ratio < down and high < 1:
        return "faster", f"{change}: faster by more than {1 - down:.1%}"
    if test.min_p >= alpha:
        return "same", f"not tested: {test.n_base} vs {test.n_new} samples cannot reach p < {alpha:g}"
    if not significant:
        return "same", f"{change}: not significant at {alpha:g}"
    if down <= test.ratio <= up:
        return "same", f"{change}: significant, within the {threshold:.1%} threshold"
    if noise > 0 and (test.ci_low > 1 or test.ci_high < 1):
        return "same", f"{change}: within the run-to-run noise (±{math.expm1(noise):.0%})"
    return "same", f"{change}: beyond the threshold, but the CI includes no change"


def threshold_for(case_id: str, suite: str | None, default: float, thresholds: Sequence[tuple[str, float]] | None) -> float:
    """The first pattern of ``thresholds`` (fnmatch) matching the case id or the suite."""
    for pattern, value in thresholds or ():
        if fnmatch.fnmatchcase(case_id, pattern) or (suite is not None and fnmatch.fnmatchcase(str(suite), pattern)):
            return float(value)
    return float(default)


def _case_rng(seed: int, case_id: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(case_id.encode())])


# --------------------------------------------------------------------------- loading
@dataclass
class Side:
    """One side of a comparison: the cases, samples and run.json of one or more runs."""

    cases: pd.DataFrame
    samples: pd.DataFrame
    metas: list[dict[str, Any]] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)


def _check_columns(frame: pd.DataFrame, required: Iterable[str], where: Path) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ResultsError(f"{where}: missing columns {missing}; is it a convbench results file of another version?")


def load_side(paths: str | Path | Iterable[str | Path]) -> Side:
    """Cases, samples and run.json of every run under ``paths``; raises ResultsError.

    Each path is a run folder or a folder holding runs; every run found is merged into
    the side, read by :func:`convbench.results.load` in whatever state it is (finished, or
    killed mid-run). A run that finished no case contributes none.
    """
    from convbench.results import load

    if isinstance(paths, (str, Path)):
        paths = [paths]
    runs = find_runs(paths)
    case_frames, sample_frames, metas = [], [], []
    for run in runs:
        meta = read_meta(run)
        cases = load(run)
        if len(cases):
            _check_columns(cases, CASE_REQUIRED, run / "cases.parquet")
            case_frames.append(cases)
        samples = load(run, samples=True)
        if len(samples):
            _check_columns(samples, SAMPLE_REQUIRED, run / "samples.parquet")
            sample_frames.append(samples)
        metas.append({**meta, "_dir": str(run), "_name": run.name})
    if not case_frames:
        raise ResultsError(f"{', '.join(map(str, paths))}: no finished case in {len(runs)} run(s)")
    cases = pd.concat(case_frames, ignore_index=True)
    samples = pd.concat(sample_frames, ignore_index=True) if sample_frames else pd.DataFrame(columns=["run_dir", *SAMPLE_REQUIRED])
    return Side(cases, samples, metas, runs)


def _merge_cases(cases: pd.DataFrame) -> pd.DataFrame:
    """One row per case_id: the row with the worst status (STATUS_PRIORITY), and the
    number of runs the case appears in."""
    if cases.empty:
        return cases.assign(runs=pd.Series(dtype=int)).set_index("case_id", drop=False)
    rank = {s: i for i, s in enumerate(STATUS_PRIORITY)}
    frame = cases.assign(_rank=cases["status"].map(lambda s: rank.get(s, len(rank))))
    counts = frame.groupby("case_id")["case_id"].transform("size")
    frame = frame.assign(runs=counts).sort_values(["case_id", "_rank"], kind="stable")
    return frame.drop_duplicates("case_id").drop(columns="_rank").set_index("case_id", drop=False)


def _cluster_columns(samples: pd.DataFrame) -> list[str]:
    return [c for c in ("run_dir", "process") if c in samples.columns]


def _sample_groups(samples: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """case_id -> (seconds, cluster labels or None); NaN and non-positive samples dropped."""
    if samples.empty:
        return {}
    clean = samples[np.isfinite(samples["seconds"].astype(float)) & (samples["seconds"].astype(float) > 0)]
    if "kept" in clean.columns:  # samples the quiet guard dropped as contended are not evidence
        clean = clean[clean["kept"].map(lambda k: k is not False and k is not np.False_)]
    if clean.empty:  # (no usable sample: empty labels below would not even concatenate)
        return {}
    cols = _cluster_columns(clean)
    if cols:
        labels = clean[cols[0]].map(str)
        for c in cols[1:]:
            labels = labels + "/" + clean[c].map(str)
        clean = clean.assign(_cluster=labels)
    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for cid, g in clean.groupby("case_id", sort=False):
        out[str(cid)] = (g["seconds"].to_numpy(dtype=np.float64), g["_cluster"].to_numpy() if cols else None)
    return out


def _joined(frame: pd.DataFrame, columns: Sequence[str], sep: str = "|") -> pd.Series:
    """The values of ``columns`` as one string per row (None/NaN as "None"/"nan")."""
    out = pd.Series([""] * len(frame), index=frame.index, dtype=object)
    for i, col in enumerate(columns):
        out = out + ("" if i == 0 else sep) + frame[col].map(str)
    return out


# --------------------------------------------------------------------------- comparison
TABLE_COLUMNS = [
    *KEY_FIELDS, "case_id", "suite", "base_median", "new_median", "ratio", "ci_low", "ci_high",
    "p_value", "verdict", "threshold", "base_status", "new_status", "base_n", "new_n",
    "run_noise", "adj_ci_low", "adj_ci_high", "base_contended", "new_contended", "reason",
]  # fmt: skip


def _reason_kind(reason: str) -> str:
    """The kind of an inconclusive verdict's reason (for counting)."""
    if reason.startswith("not tested"):
        return "too few samples to test"
    if "contended" in reason:
        return "contended (other processes used the CPU, or the machine ran at another speed, while timed)"
    if "canary" in reason:
        return "the machine itself changed speed (canary)"
    return reason.split(":")[0]


def _contention_note(b: pd.Series | None, n: pd.Series | None) -> str | None:
    """Which side was contended while timed, and how (None: neither)."""
    notes = []
    for name, r in (("BASE", b), ("NEW", n)):
        if r is not None and _flag(r.get("contended")):
            notes.append(f"contended in {name} ({r.get('contention') or 'see its telemetry'})")
    return "; ".join(notes) or None


def _flag(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and bool(value)


def canary_evidence(base_meta: Sequence[dict[str, Any]], new_meta: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the two sides' canaries say (:mod:`convbench.canary`): ``ratio`` NEW/BASE of
    their median canary times, each side's drift (slowest / fastest point) and contended
    points; empty when either side has none (runs made before the canary existed)."""
    from convbench.canary import canary_drift, canary_median

    base = [e for m in base_meta for e in (m.get("canary") or [])]
    new = [e for m in new_meta for e in (m.get("canary") or [])]
    bm, nm = canary_median(base), canary_median(new)
    if not bm or not nm:
        return {}
    return {
        "ratio": nm / bm, "base_median": bm, "new_median": nm,
        "base_drift": canary_drift(base), "new_drift": canary_drift(new),
        "base_contended": sum(bool(e.get("contended")) for e in base),
        "new_contended": sum(bool(e.get("contended")) for e in new),
    }  # fmt: skip


def canary_explains(ratio: float, canary: dict[str, Any], threshold: float) -> str | None:
    """Why a change of ``ratio`` (NEW/BASE) cannot be told from the machine's own change,
    or None. It cannot when the canary moved the same way by more than the threshold and
    by at least half the change on a log scale (``canary >= sqrt(ratio)`` for a slowdown)."""
    c = canary.get("ratio")
    if not c or not ratio or ratio <= 0:
        return None
    slower = ratio > 1 and c > 1 + threshold and math.log(c) >= 0.5 * math.log(ratio)
    faster = ratio < 1 and c < 1 / (1 + threshold) and math.log(c) <= 0.5 * math.log(ratio)
    if slower or faster:
        word = "slower" if c > 1 else "faster"
        factor = c if c > 1 else 1 / c
        return f"NEW's machine ran the canary {factor:.2f}x {word} than BASE's"
    return None


def pooled_verdict(rows: list[dict[str, Any]], tests: dict[int, RatioTest], threshold: float, alpha: float, canary: dict[str, Any]) -> dict[str, Any]:
    """The suite-level verdict: the geometric mean of the tested cases' ratios with a
    ``1 - alpha`` t-interval over cases (each case one observation of log ratio), judged
    like a case: ``slower`` when the mean is beyond the threshold and the interval
    excludes no change; ``inconclusive`` instead when the canary explains the change or
    most cases were contended. Needs MIN_POOLED_CASES cases, else ``same`` "not tested"."""
    from scipy.stats import t as student_t

    logs = [math.log(r["ratio"]) for r in rows if is_number(r.get("ratio")) and r["ratio"] > 0 and r.get("_tested")]
    n = len(logs)
    if n < MIN_POOLED_CASES:
        return {"verdict": "same", "cases": n, "reason": f"not tested: {n} case(s) timed on both sides (need {MIN_POOLED_CASES})"}
    mean = float(np.mean(logs))
    sd = float(np.std(logs, ddof=1))
    half = float(student_t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
    ratio, low, high = math.exp(mean), math.exp(mean - half), math.exp(mean + half)
    out = {"ratio": ratio, "ci_low": low, "ci_high": high, "cases": n, "confidence": 1 - alpha}
    change = f"geometric mean {(ratio - 1) * 100:+.1f}% [{(low - 1) * 100:+.1f}%, {(high - 1) * 100:+.1f}%] over {n} cases"
    up, down = 1 + threshold, 1 / (1 + threshold)
    verdict = "slower" if ratio > up and low > 1 else "faster" if ratio < down and high < 1 else "same"
    reason = f"{change}: {verdict}" if verdict != "same" else f"{change}: no change beyond {threshold:.1%}"
    if verdict != "same":
        contended = sum(1 for r in rows if r.get("_tested") and r.get("_contended"))
        explained = canary_explains(ratio, canary, threshold)
        if explained:
            verdict, reason = "inconclusive", f"{change}, but {explained}"
        elif contended * 2 > n:
            verdict, reason = "inconclusive", f"{change}, but {contended} of {n} cases were contended"
    out.update(verdict=verdict, reason=reason)
    return out


@dataclass
class Comparison:
    """The outcome of :func:`compare_runs`: one row per case, and what differs around it."""

    table: pd.DataFrame
    environment_diff: list[dict[str, str]] = field(default_factory=list)
    base_runs: list[dict[str, Any]] = field(default_factory=list)
    new_runs: list[dict[str, Any]] = field(default_factory=list)
    threshold: float = 0.05
    alpha: float = 0.01
    fail_on: tuple[str, ...] = DEFAULT_FAIL_ON
    #: estimated run-to-run noise (relative sd of the ratio) per "backend/device"
    noise: dict[str, float] = field(default_factory=dict)
    run_noise: bool = True
    #: the suite-level verdict pooled over the tested cases (:func:`pooled_verdict`)
    suite: dict[str, Any] = field(default_factory=dict)
    #: the canaries of both sides (:func:`canary_evidence`)
    canary: dict[str, Any] = field(default_factory=dict)
    #: exit 0 instead of 3 when the only trouble is inconclusive cases
    inconclusive_ok: bool = False
    #: "compare" (run against run) or "ab" (both sides measured side by side)
    method: str = "compare"

    @property
    def counts(self) -> dict[str, int]:
        """Cases per verdict, every verdict present (zeros included), in VERDICTS order."""
        got = self.table["verdict"].value_counts().to_dict() if len(self.table) else {}
        return {v: int(got.get(v, 0)) for v in VERDICTS}

    @property
    def regression(self) -> bool:
        """A case's verdict is in ``fail_on``, or the pooled suite verdict is (slower)."""
        cases = bool(self.table["verdict"].isin(self.fail_on).any()) if len(self.table) else False
        return cases or self.suite.get("verdict") in self.fail_on

    @property
    def inconclusive(self) -> int:
        """Cases (and the suite verdict) that could not be told apart from the machine."""
        n = int((self.table["verdict"] == "inconclusive").sum()) if len(self.table) else 0
        return n + int(self.suite.get("verdict") == "inconclusive")

    @property
    def exit_code(self) -> int:
        """1 on a regression; else 3 when something was inconclusive (unless
        ``inconclusive_ok``); else 0 (docs/compare.md, "Exit codes")."""
        if self.regression:
            return EXIT_REGRESSION
        if self.inconclusive and not self.inconclusive_ok:
            return EXIT_INCONCLUSIVE
        return EXIT_OK

    @property
    def untested(self) -> int:
        """Cases timed on both sides whose samples were too few to test."""
        return int(self.table["reason"].astype(str).str.startswith("not tested").sum()) if len(self.table) else 0

    @property
    def why_inconclusive(self) -> list[str]:
        """One line per reason something is inconclusive, with its count."""
        if not len(self.table):
            return []
        rows = self.table[self.table["verdict"] == "inconclusive"]
        kinds = rows["reason"].astype(str).map(_reason_kind).value_counts()
        lines = [f"{n} case(s): {kind}" for kind, n in kinds.items()]
        if self.suite.get("verdict") == "inconclusive":
            lines.append(f"suite: {self.suite.get('reason')}")
        return lines

    def to_csv(self) -> str:
        return self.table.to_csv(index=False)


def _verdict_by_status(base: pd.Series | None, new: pd.Series | None) -> tuple[str, str] | None:
    """The verdict decided by statuses alone, or None when both sides are ok."""
    if base is None and new is not None:
        if new["status"] in FAILED_STATUSES:
            return "failed", f"added, and {new['status']}: {new.get('reason') or ''}".rstrip(": ")
        return "added", "only in NEW"
    if new is None:
        return "removed", "only in BASE"
    bs, ns = base["status"], new["status"]
    if ns in FAILED_STATUSES and bs not in FAILED_STATUSES:
        return "failed", f"{ns} in NEW ({bs} in BASE): {new.get('reason') or ''}".rstrip(": ")
    if ns in FAILED_STATUSES:
        return "same", f"{ns} in NEW, {bs} in BASE: still failing"
    if bs in FAILED_STATUSES:
        return "same", f"fixed: {bs} in BASE, {ns} in NEW; nothing to compare"
    if bs == "ok" and ns == "skipped":
        return "removed", f"skipped in NEW: {new.get('reason') or ''}".rstrip(": ")
    if bs == "skipped" and ns == "ok":
        return "added", f"skipped in BASE: {base.get('reason') or ''}".rstrip(": ")
    if ns != "ok" or bs != "ok":
        return "same", f"{bs} in BASE, {ns} in NEW: nothing to compare"
    return None


def compare_runs(
    base: pd.DataFrame,
    new: pd.DataFrame,
    base_samples: pd.DataFrame,
    new_samples: pd.DataFrame,
    threshold: float = 0.05,
    alpha: float = 0.01,
    thresholds: list[tuple[str, float]] | None = None,
    seed: int = 0,
    *,
    base_meta: Sequence[dict[str, Any]] = (),
    new_meta: Sequence[dict[str, Any]] = (),
    fail_on: Sequence[str] = DEFAULT_FAIL_ON,
    run_noise: bool = True,
    n_boot: int = N_BOOT,
    inconclusive_ok: bool = False,
) -> Comparison:
    """Compare NEW against BASE case by case (rules in the module docstring).

    ``base``/``new`` are cases frames, ``*_samples`` samples frames (of one or several
    runs each); ``thresholds`` are ``(fnmatch pattern on case_id or suite, threshold)``
    pairs, first match wins, ``threshold`` otherwise; ``*_meta`` are run.json dicts for
    the environment difference and headers; ``run_noise`` estimates the run-to-run noise
    per backend and device from the cases and widens every CI by it.
    """
    if threshold < 0 or not 0 < alpha < 1:
        raise ValueError(f"threshold must be >= 0 and alpha in (0, 1); got {threshold}, {alpha}")
    unknown = set(fail_on) - set(VERDICTS)
    if unknown:
        raise ValueError(f"unknown verdicts in fail_on: {sorted(unknown)}; expected some of {list(VERDICTS)}")
    b_rows, n_rows = _merge_cases(base), _merge_cases(new)
    b_samples, n_samples = _sample_groups(base_samples), _sample_groups(new_samples)
    rows: list[dict[str, Any]] = []
    tests: dict[int, RatioTest] = {}
    for cid in dict.fromkeys([*b_rows.index, *n_rows.index]):
        b = b_rows.loc[cid] if cid in b_rows.index else None
        n = n_rows.loc[cid] if cid in n_rows.index else None
        ref = n if n is not None else b
        assert ref is not None
        row: dict[str, Any] = {f: ref.get(f) for f in KEY_FIELDS}
        row.update(
            case_id=cid, suite=ref.get("suite"), threshold=threshold_for(str(cid), ref.get("suite"), threshold, thresholds),
            base_status=None if b is None else b["status"], new_status=None if n is None else n["status"],
            base_median=None if b is None else b.get("median"), new_median=None if n is None else n.get("median"),
        )  # fmt: skip
        decided = _verdict_by_status(b, n)
        row.update(
            base_contended=None if b is None else _flag(b.get("contended")),
            new_contended=None if n is None else _flag(n.get("contended")),
        )
        if decided is None:
            assert b is not None and n is not None
            bv, bg = b_samples.get(cid, (np.empty(0), None))
            nv, ng = n_samples.get(cid, (np.empty(0), None))
            row.update(base_n=bv.size, new_n=nv.size, _contended=_contention_note(b, n))
            if bv.size < 2 or nv.size < 2:
                decided = ("inconclusive", f"not tested: {bv.size} vs {nv.size} raw samples (need 2 or more on each side)")
                if is_number(row["base_median"]) and is_number(row["new_median"]) and row["base_median"] > 0:
                    row["ratio"] = row["new_median"] / row["base_median"]
            else:
                test = ratio_test(bv, nv, _case_rng(seed, str(cid)), base_groups=bg, new_groups=ng, n_boot=n_boot)
                tests[len(rows)] = test
                row["_tested"] = True
                row.update(
                    base_median=float(np.median(bv)), new_median=float(np.median(nv)), ratio=test.ratio,
                    ci_low=test.ci_low, ci_high=test.ci_high, p_value=test.p_value,
                )  # fmt: skip
                if b.get("timer") != n.get("timer") and isinstance(b.get("timer"), str) and isinstance(n.get("timer"), str):
                    row["note"] = f"timer changed: {b.get('timer')} -> {n.get('timer')}"
        if decided is not None:
            row["verdict"], row["reason"] = decided
        rows.append(row)
    noise = _noise_by_group(rows, tests) if run_noise else {}
    canary = canary_evidence(base_meta, new_meta)
    for i, test in tests.items():
        row = rows[i]
        tau = noise.get(_noise_key(row), 0.0)
        row["run_noise"] = math.expm1(tau) if tau else 0.0
        row["adj_ci_low"], row["adj_ci_high"] = test.bounds(tau, 1 - alpha)
        row["verdict"], row["reason"] = doubt(decide(test, row["threshold"], alpha, tau), test.ratio, row, canary)
        if row.get("note"):
            row["reason"] = f"{row['reason']}; {row['note']}"
    suite = pooled_verdict(rows, tests, threshold, alpha, canary)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    order = {v: i for i, v in enumerate(VERDICTS)}
    table = table.assign(_o=table["verdict"].map(order), _r=-table["ratio"].astype(float).fillna(1.0))
    table = table.sort_values(["_o", "_r", "case_id"], kind="stable").drop(columns=["_o", "_r"]).reset_index(drop=True)
    return Comparison(
        table=table,
        environment_diff=environment_diff(base_meta, new_meta) if base_meta and new_meta else [],
        base_runs=[run_info(m) for m in base_meta],
        new_runs=[run_info(m) for m in new_meta],
        threshold=threshold,
        alpha=alpha,
        fail_on=tuple(fail_on),
        noise={k: math.expm1(v) for k, v in noise.items()},
        run_noise=run_noise,
        suite=suite,
        canary=canary,
        inconclusive_ok=inconclusive_ok,
    )


def doubt(decided: tuple[str, str], ratio: float, row: dict[str, Any], canary: dict[str, Any]) -> tuple[str, str]:
    """A tested case becomes ``inconclusive`` when a side was contended while timed
    (``row["_contended"]``: whatever its verdict, the samples cannot be trusted either way),
    a ``slower`` or ``faster`` one when the canary explains the change, and a case whose
    samples are too few to test."""
    verdict, reason = decided
    if reason.startswith("not tested"):
        return "inconclusive", reason
    if row.get("_contended"):  # a contended side can hide a change as well as fake one
        return "inconclusive", f"{reason}, but {row['_contended']}"
    if verdict not in ("slower", "faster"):
        return decided
    why = canary_explains(ratio, canary, row["threshold"])
    return ("inconclusive", f"{reason}, but {why}") if why else decided


def _noise_key(row: dict[str, Any]) -> str:
    return f"{row.get('backend')}/{row.get('device')}"


def _noise_by_group(rows: list[dict[str, Any]], tests: dict[int, RatioTest]) -> dict[str, float]:
    """Run-to-run noise (sd of log ratio) per backend/device: from the group's cases
    when it has enough, else from every tested case when they are enough, else none."""
    groups: dict[str, list[RatioTest]] = {}
    for i, test in tests.items():
        groups.setdefault(_noise_key(rows[i]), []).append(test)
    out: dict[str, float] = {}
    every = list(tests.values())
    overall = estimate_noise([math.log(t.ratio) for t in every], [t.se for t in every])
    for key, group in groups.items():
        tau = estimate_noise([math.log(t.ratio) for t in group], [t.se for t in group])
        if tau is None:
            tau = overall
        if tau is not None:
            out[key] = tau
    return out


def compare_paths(
    base_paths: str | Path | Iterable[str | Path],
    new_paths: str | Path | Iterable[str | Path],
    allow_emulated: bool = False,
    **kw: Any,
) -> Comparison:
    """:func:`compare_runs` of the runs under ``base_paths`` and ``new_paths`` (each a run
    folder or a folder of runs; several per side are merged). Raises ResultsError on a
    missing or unreadable run, when the sides share no case, or when emulated runs meet
    native ones (unless ``allow_emulated``; see :mod:`convbench.emulation`)."""
    base, new = load_side(base_paths), load_side(new_paths)
    from convbench.emulation import emulation_mismatch

    mismatch = None if allow_emulated else emulation_mismatch(base.metas, new.metas)
    if mismatch:
        raise ResultsError(mismatch)
    common = set(base.cases["case_id"]) & set(new.cases["case_id"])
    if not common:
        suites = lambda s: ", ".join(sorted(map(str, s.cases["suite"].dropna().unique())))  # noqa: E731
        raise ResultsError(
            f"nothing to compare: BASE ({', '.join(map(str, base.paths))}, suite {suites(base)}) and NEW "
            f"({', '.join(map(str, new.paths))}, suite {suites(new)}) have no case in common"
        )
    return compare_runs(base.cases, new.cases, base.samples, new.samples, base_meta=base.metas, new_meta=new.metas, **kw)


# --------------------------------------------------------------------------- within a run
WITHIN_COLUMNS = [
    "baseline_value", "median", "baseline_median", "ratio", "ratio_ci_low", "ratio_ci_high",
    "speedup", "speedup_ci_low", "speedup_ci_high", "source", "status", "note",
]  # fmt: skip


def within_run(
    cases: pd.DataFrame,
    by: str = "variant",
    baseline: str = "native",
    samples: pd.DataFrame | None = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> pd.DataFrame:
    """Speedup of each ``by`` value (variant or backend) over ``baseline`` on the same case.

    One row per (case without ``by``, ``by`` value other than the baseline): the key
    fields, ``by``, the row's ``case_id``, ``baseline_value``, both medians, ``ratio`` = time / baseline time
    with ``ratio_ci_low``/``ratio_ci_high``, ``speedup`` = 1 / ratio with its CI,
    ``source`` (``interleaved``: per-round ratios measured side by side; ``bootstrap``:
    ratio of medians, CI from the raw samples; ``medians``: ratio of medians, no CI),
    ``status`` and a ``note`` when either side was not timed. Cases from several runs
    stay apart (``run_dir`` joins the key).
    """
    if by not in KEY_FIELDS:
        raise ValueError(f"by must be one of {list(KEY_FIELDS)}, got {by!r}")
    keys = [f for f in KEY_FIELDS if f != by]
    if "run_dir" in cases.columns and cases["run_dir"].nunique() > 1:
        keys.append("run_dir")
    groups = _sample_groups(samples) if samples is not None else {}
    frame = cases.copy()
    frame["_key"] = _joined(frame, keys)
    rows = []
    for _, group in frame.groupby("_key", sort=False):
        base_rows = group[group[by].map(str) == str(baseline)]
        if base_rows.empty:
            continue
        b = base_rows.iloc[0]
        for _, r in group.iterrows():
            if str(r[by]) == str(baseline):
                continue
            out: dict[str, Any] = {f: r.get(f) for f in keys}
            out[by] = r[by]
            out["case_id"] = r["case_id"]
            out.update(baseline_value=baseline, median=r.get("median"), baseline_median=b.get("median"), status=r["status"])
            out.update(_within_ratio(r, b, by, baseline, groups, seed, n_boot))
            rows.append(out)
    columns = [*keys, by, "case_id", *WITHIN_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def _within_ratio(r: pd.Series, b: pd.Series, by: str, baseline: str, groups: dict, seed: int, n_boot: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r["status"] != "ok" or b["status"] != "ok":
        out["note"] = f"not timed: {r['status'] if r['status'] != 'ok' else 'baseline ' + b['status']}"
        return out
    if by == "variant" and r.get("baseline") == baseline and is_number(r.get("ratio")):
        out.update(ratio=r["ratio"], ratio_ci_low=r.get("ratio_ci_low"), ratio_ci_high=r.get("ratio_ci_high"), source="interleaved")
    elif r["case_id"] in groups and b["case_id"] in groups and min(groups[r["case_id"]][0].size, groups[b["case_id"]][0].size) >= 2:
        test = ratio_test(groups[b["case_id"]][0], groups[r["case_id"]][0], _case_rng(seed, r["case_id"]), n_boot=n_boot)
        out.update(ratio=test.ratio, ratio_ci_low=test.ci_low, ratio_ci_high=test.ci_high, source="bootstrap")
    elif is_number(r.get("median")) and is_number(b.get("median")) and b["median"] > 0:
        out.update(ratio=r["median"] / b["median"], source="medians")
    else:
        out["note"] = "no timing"
        return out
    inv = lambda x: 1 / x if is_number(x) and x > 0 else None  # noqa: E731
    out.update(speedup=inv(out["ratio"]), speedup_ci_low=inv(out.get("ratio_ci_high")), speedup_ci_high=inv(out.get("ratio_ci_low")))
    return out


def to_jsonable(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Records of ``frame`` with NaN as None (for JSON)."""
    return json.loads(frame.to_json(orient="records", default_handler=str))
