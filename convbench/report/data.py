"""The runs a report shows: loaded once, in a stable order, with safe file names.

A :class:`Run` is one run folder: its ``run.json`` (``meta``), its cases (the rows of
``cases.parquet`` as :func:`convbench.results.load` returns them) and the slug that names
its page and its data folder in the site. Runs are ordered by start time, then folder
name, then path, so the same folders always give the same site.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from convbench.cases import KEY_FIELDS, format_case_id
from convbench.compare import within_run
from convbench.results import STATUSES, ResultsError, find_runs, load, read_run, warn_skipped
from convbench.run_record import RunRecord, as_record

#: Case key columns shown in the tables, in order (``variant`` follows ``workload``).
KEY_COLUMNS = list(KEY_FIELDS)

_SAFE = re.compile(r"[^a-z0-9]+")


@dataclass
class Run:
    """One run folder, as the report shows it."""

    path: Path
    name: str
    slug: str
    meta: dict[str, Any]
    cases: pd.DataFrame
    samples: pd.DataFrame
    order: dict[str, int] = field(default_factory=dict)  #: case_id -> planned position
    record: RunRecord | None = None  #: run.json, typed (parsed from ``meta`` when not given)

    def __post_init__(self) -> None:
        if self.record is None:
            self.record = as_record(self.meta)

    @property
    def baseline_variant(self) -> str:
        """The variant the run timed the others against (``native`` when none was)."""
        named = self.cases["baseline"].dropna() if "baseline" in self.cases else []
        return str(named.mode().iloc[0]) if len(named) else "native"

    @property
    def suite(self) -> str:
        return str(self.record.suite or (self.cases["suite"].iloc[0] if len(self.cases) else "unnamed"))

    @property
    def core_env(self) -> dict[str, Any]:
        return self.record.core.to_dict()

    @property
    def emulated(self) -> bool:
        """Taken under an emulator (qemu-user, Rosetta): its timings mean nothing."""
        from convbench.emulation import run_emulated

        return run_emulated(self.meta)

    @property
    def emulator(self) -> str | None:
        from convbench.emulation import run_emulator

        return run_emulator(self.meta)

    @property
    def backend_envs(self) -> dict[str, dict[str, Any]]:
        backends = self.record.environment.backends
        return {k: backends[k] for k in sorted(backends)}

    @property
    def contended(self) -> int:
        """Cases judged contended while timed (0 for runs older than the telemetry)."""
        return sum(map(flag, self.cases["contended"])) if "contended" in self.cases else 0

    @property
    def timed(self) -> int:
        """Cases with a median time."""
        return int(self.cases["median"].map(num).notna().sum()) if "median" in self.cases else 0

    @property
    def canary(self) -> list[dict[str, Any]]:
        """The canary points of run.json (start, middle, end; empty before the canary)."""
        return list(self.record.canary)

    def counts(self) -> dict[str, int]:
        """Cases per status (every status, zeros included) and ``planned``."""
        got = self.cases["status"].value_counts().to_dict() if len(self.cases) else {}
        out = {s: int(got.get(s, 0)) for s in STATUSES}
        out["planned"] = len(self.record.cases) or len(self.cases)
        out["unfinished"] = max(out["planned"] - len(self.cases), 0)
        return out


def slugify(text: str, taken: set[str]) -> str:
    """A file-name-safe, unique (within ``taken``, which it extends) name for ``text``.

    Lowercase letters, digits and dashes; a short hash of ``text`` is appended when the
    text had to change, so distinct names never meet, and a counter on collision.
    """
    base = _SAFE.sub("-", text.lower()).strip("-")[:48] or "x"
    if base != text:
        base = f"{base}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def load_runs(paths: Iterable[str | Path], skip_bad: bool = False) -> list[Run]:
    """Every run folder under ``paths`` (each once), in start-time order.

    Raises :class:`~convbench.results.ResultsError` for a missing path, a folder holding
    no run, or unreadable files; with ``skip_bad``, a run whose files are unreadable is
    left out with a warning on stderr instead (unless every run is).
    """
    seen: dict[Path, Path] = {}
    for p in find_runs(paths):
        seen.setdefault(p.resolve(), p)
    loaded: dict[Path, tuple[RunRecord, pd.DataFrame, pd.DataFrame]] = {}
    errors: list[ResultsError] = []
    for p in seen.values():
        try:
            loaded[p] = (read_run(p), load([p]), load([p], samples=True))
        except ResultsError as exc:
            if not skip_bad:
                raise
            errors.append(exc)
    if errors and not loaded:
        raise errors[0]
    for exc in errors:
        warn_skipped(exc)
    ordered = sorted(loaded, key=lambda p: (str(loaded[p][0].started or ""), p.name, str(p)))
    taken: set[str] = set()
    names = _unique_names(ordered)
    runs = []
    for p in ordered:
        record, cases, samples = loaded[p]
        order = {format_case_id(c): i for i, c in enumerate(record.cases)}
        cases["run"], samples["run"] = names[p], names[p]
        runs.append(Run(p, names[p], slugify(names[p], taken), record.to_dict(), cases, samples, order, record))
    return runs


def _unique_names(paths: Sequence[Path]) -> dict[Path, str]:
    """Folder names, with the parent's name added where two runs share one."""
    count: dict[str, int] = {}
    for p in paths:
        count[p.name] = count.get(p.name, 0) + 1
    names = {p: p.name if count[p.name] == 1 else f"{p.parent.name}/{p.name}" for p in paths}
    seen: dict[str, int] = {}
    for p in paths:  # still equal (a/run and b/a/run): number them in order
        seen[names[p]] = seen.get(names[p], 0) + 1
        if seen[names[p]] > 1:
            names[p] = f"{names[p]} ({seen[names[p]]})"
    return names


def run_peaks(runs: Sequence[Run]) -> dict[tuple[str, str, str, str, str], tuple[float, float]]:
    """Device peaks the runs measured (``environment.backends["BACKEND:DEVICE"].peaks``,
    see :mod:`convbench.peaks`), keyed (run, backend, device, dtype, threads); threads is
    "None" off the CPU. Entries without both a positive FLOP/s and bytes/s are left out."""
    out = {}
    for run in runs:
        for key, info in run.backend_envs.items():
            backend, _, device = key.partition(":")
            for pkey, peak in ((info or {}).get("peaks") or {}).items():
                if not isinstance(peak, dict):
                    continue
                flops, bw = num(peak.get("flops_per_s")), num(peak.get("bytes_per_s"))
                dtype, _, threads = str(pkey).partition("/threads=")
                if flops and bw and flops > 0 and bw > 0:
                    out[(run.name, backend, device, dtype, threads or "None")] = (flops, bw)
    return out


def suites_of(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs grouped by suite name, suites sorted by name, runs in their order."""
    out: dict[str, list[Run]] = {}
    for run in runs:
        out.setdefault(run.suite, []).append(run)
    return {name: out[name] for name in sorted(out)}


def num(value: Any) -> float | None:
    """``value`` as a finite float, else None (NaN, None, strings)."""
    if value is None or isinstance(value, (str, bool)):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def flag(value: Any) -> bool:
    """A telemetry flag (``contended``, ``threads_all_cores``) as a bool: missing, None
    and NaN (not evaluated, or a run older than the telemetry) are False."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return False
    return bool(value)


def suite_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """The cases of ``runs`` (one suite) in a stable order, with speedups.

    Rows are ordered by run, then planned position, then case id. Added columns, from
    :func:`convbench.compare.within_run` against each run's baseline variant:
    ``baseline_variant``, ``speedup`` (baseline time / this variant's time),
    ``speedup_low``/``speedup_high`` (its 95% CI) and ``speedup_source`` (``interleaved``:
    per-round ratios measured side by side; ``bootstrap``: ratio of medians, CI from the
    raw samples; ``medians``: no CI). None for the baseline itself and untimed cases.
    """
    frames = []
    for rank, run in enumerate(runs):
        if run.cases.empty:
            continue
        f = run.cases.copy()
        f["run_rank"] = rank
        f["planned"] = [run.order.get(cid, len(run.order)) for cid in f["case_id"]]
        f["baseline_variant"] = run.baseline_variant
        frames.append(f.merge(_speedups(run), on="case_id", how="left"))
    if not frames:
        return pd.DataFrame(columns=[*KEY_COLUMNS, "case_id", "status", "run", "baseline_variant", *SPEEDUP_COLUMNS])
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.sort_values(["run_rank", "planned", "case_id"], kind="stable").reset_index(drop=True)
    frame = frame.astype(dict.fromkeys(SPEEDUP_COLUMNS, object))
    for col in SPEEDUP_COLUMNS:
        frame[col] = frame[col].where(frame[col].notna(), None)
    frame["threads"] = pd.Series([None if num(t) is None else int(num(t)) for t in frame["threads"]], dtype=object)
    return frame


def row_keys(frame: pd.DataFrame, columns: Sequence[str], sep: str = "\x1f") -> pd.Series:
    """One string per row joining ``str()`` of its ``columns`` (None as "None")."""
    if frame.empty:
        return pd.Series([], dtype=object, index=frame.index)
    return pd.Series([sep.join(map(str, values)) for values in frame[list(columns)].itertuples(index=False)], index=frame.index, dtype=object)


SPEEDUP_COLUMNS = ["speedup", "speedup_low", "speedup_high", "speedup_source"]


def _speedups(run: Run) -> pd.DataFrame:
    """case_id -> speedup columns of one run's non-baseline variants."""
    cases = run.cases.copy()
    # Key fields as case_id writes them (threads "2" or "None", not 2.0 or NaN).
    cases["threads"] = [str(int(t)) if num(t) is not None else "None" for t in cases["threads"]]
    within = within_run(cases, by="variant", baseline=run.baseline_variant, samples=run.samples)
    if within.empty:
        return pd.DataFrame(columns=["case_id", *SPEEDUP_COLUMNS])
    ids = [format_case_id(dict(zip(KEY_COLUMNS, values, strict=True))) for values in within[KEY_COLUMNS].itertuples(index=False)]
    return pd.DataFrame({
        "case_id": pd.Series(ids, index=within.index, dtype=object),
        "speedup": within["speedup"].map(num),
        "speedup_low": within["speedup_ci_low"].map(num),
        "speedup_high": within["speedup_ci_high"].map(num),
        "speedup_source": within["source"],
    })  # fmt: skip


__all__ = ["KEY_COLUMNS", "SPEEDUP_COLUMNS", "ResultsError", "Run", "flag", "load_runs", "num", "row_keys", "run_peaks", "slugify", "suite_frame", "suites_of"]
