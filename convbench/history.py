"""A series of runs: each case's median per run, ordered by start time, and its change points.

Change points: between each pair of consecutive runs (by ``started``, then run folder
name) the cases are compared exactly as :func:`convbench.compare.compare_runs` does
(ratio of medians, bootstrap CI, Mann-Whitney U, threshold, run-to-run noise); a case
whose verdict is ``slower``, ``faster`` or ``failed`` at run k has a change point there.
This finds steps; a slow creep (1% per run) has none, which the ``vs_first`` column (the
median against the case's first timed run) shows instead. A case missing from a run
breaks its chain: the next run it appears in is not compared with an older one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from convbench.cases import KEY_FIELDS
from convbench.compare import DEFAULT_FAIL_ON, compare_runs, load_side
from convbench.results import ResultsError, find_runs, warn_skipped
from convbench.run_environment import run_info

__all__ = ["CHANGE_VERDICTS", "History", "history", "history_paths"]

#: Verdicts of a step between consecutive runs that make a change point.
CHANGE_VERDICTS = ("slower", "faster", "failed")

HISTORY_COLUMNS = [
    *KEY_FIELDS, "case_id", "suite", "order", "run", "run_dir", "started", "status",
    "median", "ci_low", "ci_high", "n", "step_ratio", "step_ci_low", "step_ci_high",
    "step_p_value", "change", "step_reason", "vs_first",
]  # fmt: skip


@dataclass
class History:
    """One row per (case, run) in ``table``; the runs in order in ``runs``."""

    table: pd.DataFrame
    runs: pd.DataFrame
    threshold: float = 0.05
    alpha: float = 0.01
    noise: list[dict[str, Any]] = field(default_factory=list)  #: per step: run, group, noise

    @property
    def changes(self) -> pd.DataFrame:
        """The rows that are change points."""
        return self.table[self.table["change"].isin(CHANGE_VERDICTS)]

    def wide(self, value: str = "median") -> pd.DataFrame:
        """Cases as rows (index case_id), runs in order as columns (run folder names)."""
        pivot = self.table.pivot_table(index="case_id", columns="order", values=value, aggfunc="first")
        names = dict(zip(self.runs["order"], self.runs["run"], strict=True))
        return pivot.rename(columns=names)

    def export(self, path: str | Path) -> Path:
        """Write ``table`` to ``path``: .csv, .parquet or .json (records)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            self.table.to_csv(path, index=False)
        elif suffix == ".parquet":
            self.table.to_parquet(path, index=False)
        elif suffix == ".json":
            self.table.to_json(path, orient="records", indent=2)
        else:
            raise ValueError(f"{path}: export to .csv, .parquet or .json")
        return path


def _ordered_runs(cases: pd.DataFrame, metas: Sequence[dict[str, Any]]) -> pd.DataFrame:
    info = {m.get("_dir"): run_info(m) for m in metas}
    runs = cases.groupby("run_dir", sort=False).agg(run=("run", "first"), started=("started", "first")).reset_index()
    runs["started"] = runs["started"].map(lambda s: s if isinstance(s, str) else "")
    runs = runs.sort_values(["started", "run", "run_dir"], kind="stable").reset_index(drop=True)
    runs.insert(0, "order", range(len(runs)))
    for col in ("suite", "git_revision", "host"):
        runs[col] = runs["run_dir"].map(lambda d, c=col: info.get(d, {}).get(c))
    return runs


def history(
    cases: pd.DataFrame,
    samples: pd.DataFrame,
    threshold: float = 0.05,
    alpha: float = 0.01,
    thresholds: list[tuple[str, float]] | None = None,
    seed: int = 0,
    *,
    metas: Sequence[dict[str, Any]] = (),
    run_noise: bool = True,
    n_boot: int = 2000,
) -> History:
    """The history of the runs in ``cases``/``samples`` (frames of several runs, with
    ``run``, ``run_dir`` and ``started`` columns as :func:`convbench.results.load` adds)."""
    for frame, name in ((cases, "cases"), (samples, "samples")):
        missing = {"run_dir"} - set(frame.columns)
        if missing and len(frame):
            raise ValueError(f"{name} frame lacks {sorted(missing)}: load it with convbench.results.load")
    runs = _ordered_runs(cases, metas)
    order = dict(zip(runs["run_dir"], runs["order"], strict=True))
    table = cases.assign(order=cases["run_dir"].map(order))
    table = table.sort_values(["order"], kind="stable").drop_duplicates(["run_dir", "case_id"], keep="last")
    steps: dict[tuple[str, str], dict[str, Any]] = {}
    noise: list[dict[str, Any]] = []
    for k in range(1, len(runs)):
        prev, cur = runs["run_dir"].iloc[k - 1], runs["run_dir"].iloc[k]
        cmp = compare_runs(
            cases[cases["run_dir"] == prev], cases[cases["run_dir"] == cur],
            samples[samples["run_dir"] == prev] if len(samples) else samples,
            samples[samples["run_dir"] == cur] if len(samples) else samples,
            threshold, alpha, thresholds, seed, fail_on=DEFAULT_FAIL_ON, run_noise=run_noise, n_boot=n_boot,
        )  # fmt: skip
        noise += [{"run": runs["run"].iloc[k], "group": g, "noise": v} for g, v in cmp.noise.items()]
        for _, r in cmp.table.iterrows():
            if r["new_status"] is None:
                continue
            steps[(cur, r["case_id"])] = {
                "step_ratio": r["ratio"], "step_ci_low": r["ci_low"], "step_ci_high": r["ci_high"],
                "step_p_value": r["p_value"], "change": r["verdict"] if r["verdict"] in CHANGE_VERDICTS else "",
                "step_reason": r["reason"],
            }  # fmt: skip
    step_cols = ["step_ratio", "step_ci_low", "step_ci_high", "step_p_value", "change", "step_reason"]
    for col in step_cols:
        table[col] = [steps.get((d, c), {}).get(col) for d, c in zip(table["run_dir"], table["case_id"], strict=True)]
    table["change"] = table["change"].fillna("")
    timed = table[(table["status"] == "ok") & table["median"].notna()]
    first = timed.sort_values("order").drop_duplicates("case_id").set_index("case_id")["median"]
    table["vs_first"] = np.where(table["status"] == "ok", table["median"] / table["case_id"].map(first), np.nan)
    for col in HISTORY_COLUMNS:
        if col not in table.columns:
            table[col] = None
    table = table.sort_values(["case_id", "order"], kind="stable")[HISTORY_COLUMNS].reset_index(drop=True)
    return History(table=table, runs=runs, threshold=threshold, alpha=alpha, noise=noise)


def history_paths(paths: str | Path | Iterable[str | Path], **kw: Any) -> History:
    """:func:`history` of every run under ``paths`` (run folders or folders of runs);
    raises ResultsError on a missing path. A run whose files are unreadable is left out
    with a warning on stderr (ResultsError when every run is)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    runs = list(dict.fromkeys(p.resolve() for p in find_runs(paths)))
    case_frames, sample_frames, metas = [], [], []
    bad: list[ResultsError] = []
    for run in runs:
        try:
            side = load_side(run)
        except ResultsError as exc:
            if "no finished case" in str(exc):
                continue  # a run that finished nothing has no place in the series
            bad.append(exc)  # a corrupted run: left out (with a warning), the others go on
            continue
        case_frames.append(side.cases)
        if len(side.samples):
            sample_frames.append(side.samples)
        metas += side.metas
    if bad and not case_frames:
        raise bad[0]
    for exc in bad:
        warn_skipped(exc)
    if not case_frames:
        raise ResultsError(f"{', '.join(map(str, paths))}: no run with a finished case")
    cases = pd.concat(case_frames, ignore_index=True)
    samples = pd.concat(sample_frames, ignore_index=True) if sample_frames else pd.DataFrame(columns=["run_dir", "case_id", "seconds"])
    return history(cases, samples, metas=metas, **kw)
