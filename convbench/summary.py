"""The end-of-run summary: per case group, each variant's time and its speedup."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.markup import escape
from rich.table import Table

from convbench.contention import CONTENDED_MEANING

#: Columns that identify a row of the summary (a case without its variant).
GROUP_COLUMNS = ["workload", "backend", "device", "mode", "batch", "dtype", "layout", "execution", "threads"]


def format_time(seconds: float | None) -> str:
    """Seconds in the unit that reads best (s, ms, us)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if float(f"{seconds:.3g}") >= scale:  # 999.6 us reads 1 ms, not "1e+03 us"
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def speedup(row: pd.Series, base: pd.Series | None) -> tuple[float | None, float | None, float | None]:
    """Speedup of ``row`` over its baseline: 1 / (per-round ratio) with its CI when the
    case was interleaved, else the ratio of medians (no CI)."""
    if _num(row.get("ratio")):
        return 1 / row["ratio"], _inv(row.get("ratio_ci_high")), _inv(row.get("ratio_ci_low"))
    if base is not None and _num(base.get("median")) and _num(row.get("median")):
        return base["median"] / row["median"], None, None
    return None, None, None


def _num(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _inv(value: Any) -> float | None:
    return 1 / value if _num(value) and value else None


#: The marks a summary cell may carry, and what each means (the table's legend).
MARKS = {
    "*": "did not converge to the requested precision",
    "!": f"contended: {CONTENDED_MEANING} (see below)",
    "†": "as many threads as usable cores: one busy neighbour stalls a thread at every barrier",
}


def _flag(value: Any) -> bool:
    return _num(value) and bool(value)


def cell(row: pd.Series) -> str:
    """A case's time with its spread (IQR as % of the median) and its marks, or its status."""
    if row["status"] != "ok":
        return f"[yellow]{row['status']}[/]"
    if not _num(row.get("median")):
        return "[green]verified[/]"
    spread = row["iqr"] / row["median"] * 100 if row["median"] else float("nan")
    flag = "" if row.get("converged") else "*"
    flag += "[bold yellow]![/]" if _flag(row.get("contended")) else ""
    flag += "†" if _flag(row.get("threads_all_cores")) else ""
    return f"{format_time(row['median'])} ±{spread:.0f}%{flag}"


#: Page faults per iteration from which the summary names a case (a step that allocates
#: its outputs afresh from the OS pays one fault per 4 KiB page it touches).
PAGE_FAULTS_NOTED = 1.0


def _worst_load(hit: pd.DataFrame) -> str:
    """The worst foreign CPU and the speed probe's range over contended cases, in words."""
    parts = []
    worst = pd.to_numeric(hit["foreign_cpu"], errors="coerce").max() if "foreign_cpu" in hit else float("nan")
    if math.isfinite(worst):
        parts.append(f"other processes used up to {worst:.2f} cores")
    speeds = [pd.to_numeric(hit[c], errors="coerce") for c in ("speed_compute", "speed_memory") if c in hit]
    known = pd.concat(speeds).dropna() if speeds else pd.Series(dtype=float)
    if len(known):
        parts.append(f"the speed probe took {known.min():.2f}-{known.max():.2f}x the machine's reference time")
    return "; ".join(parts) or "see their telemetry"


def contention_lines(cases: pd.DataFrame) -> list[str]:
    """Lines for under the summary: how many timed cases were contended, the worst load,
    how many page-faulted in their timed steps, and how many ran with as many threads as cores."""
    lines = []
    if "contended" in cases.columns:
        hit = cases[cases["contended"].map(_flag)]
        if len(hit):
            load = _worst_load(hit)
            lines.append(
                f"! {len(hit)} of {int(cases['contended'].notna().sum())} timed cases were contended while timed ({load}): "
                "their times and ratios are less trustworthy; the reasons are in cases.parquet (contention)"
            )
    if "page_faults" in cases.columns:
        faults = pd.to_numeric(cases.loc[cases["status"] == "ok", "page_faults"], errors="coerce")
        faulting = faults[faults >= PAGE_FAULTS_NOTED]
        if len(faulting):
            lines.append(
                f"{len(faulting)} case(s) page-faulted in every step (up to {faulting.max():,.0f} faults per iteration): "
                "their times include the kernel's page-fault handling (timing: allocator, docs/timing.md)"
            )
    if "threads_all_cores" in cases.columns:
        fragile = int(cases.loc[cases["status"] == "ok", "threads_all_cores"].map(_flag).sum())
        if fragile:
            lines.append(f"† {fragile} case(s) use as many threads as usable cores: fragile under contention (set threads: in the suite to change it)")
    return lines


def summary_frame(cases: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per case group: per variant its cell, per non-baseline variant its speedup."""
    cases = cases.copy()
    cases["threads"] = cases["threads"].astype(object).where(cases["threads"].notna(), None)
    variants = list(dict.fromkeys(cases["variant"]))
    rows = []
    for key, group in cases.groupby(GROUP_COLUMNS, sort=False, dropna=False):
        by_variant = {r["variant"]: r for _, r in group.iterrows()}
        base_name = next((r["baseline"] for r in by_variant.values() if _num(r.get("baseline"))), variants[0])
        base = by_variant.get(base_name)
        out: dict[str, Any] = dict(zip(GROUP_COLUMNS, key, strict=True))
        errors = [r["verify_error"] for r in by_variant.values() if _num(r.get("verify_error"))]
        out["verify_error"] = max(errors) if errors else None
        for v in variants:
            r = by_variant.get(v)
            out[v] = cell(r) if r is not None else ""
            if r is not None and v != base_name:
                out[f"speedup:{v}"] = speedup(r, base) if r["status"] == "ok" else (None, None, None)
        out["notes"] = "; ".join(
            f"{v}: {r['reason']}" for v, r in by_variant.items() if r["status"] != "ok" and r.get("reason")
        )
        rows.append(out)
    return pd.DataFrame(rows), variants


def without_skipped_groups(cases: pd.DataFrame) -> pd.DataFrame:
    """``cases`` less the case groups in which every case was skipped (e.g. the CUDA cases
    on a machine without a GPU): those are told by :func:`status_lines`, not as rows."""
    keys = cases[GROUP_COLUMNS].astype(str).apply(tuple, axis=1)
    skipped_only = (cases["status"] == "skipped").groupby(keys).transform("all")
    return cases[~skipped_only.to_numpy()]


def status_lines(cases: pd.DataFrame) -> list[str]:
    """One line per status and reason of the cases that are not ok, most frequent first,
    e.g. "20 skipped: CUDA is not available"."""
    bad = cases[cases["status"] != "ok"]
    counts = bad.groupby(["status", bad["reason"].fillna("(no reason given)")], sort=False).size()
    return [f"{count} {status}: {reason}" for (status, reason), count in counts.sort_values(ascending=False, kind="stable").items()]


#: Case groups the end-of-run table shows at most (a suite of thousands of cases is read
#: in cases.parquet or the report, not in a terminal).
MAX_SUMMARY_GROUPS = 200


def summary_table(cases: pd.DataFrame, title: str = "convbench summary", limit: int = MAX_SUMMARY_GROUPS) -> Table:
    """A rich table: workload and case columns that vary, then variants, speedups, error.

    Case groups that were skipped entirely are left out (see :func:`status_lines`); past
    ``limit`` groups the rest are counted in the caption, not shown."""
    cases = without_skipped_groups(cases)
    keys = cases[GROUP_COLUMNS].astype(str).apply(tuple, axis=1)
    order = list(dict.fromkeys(keys))
    hidden = max(0, len(order) - limit)
    if hidden:
        cases = cases[keys.isin(set(order[:limit])).to_numpy()]
    frame, variants = summary_frame(cases)
    varying = [c for c in GROUP_COLUMNS if c == "workload" or frame[c].astype(str).nunique() > 1]
    table = Table(title=title, title_justify="left")
    for c in varying:
        table.add_column(c)
    for v in variants:
        table.add_column(f"{v}\nmedian ±IQR", justify="right")
    speed_cols = [c for c in frame.columns if c.startswith("speedup:")]
    for c in speed_cols:
        table.add_column(f"speedup\n{c.split(':', 1)[1]} [95% CI]", justify="right")
    table.add_column("verify\nrel. err", justify="right")
    for _, r in frame.iterrows():
        speeds = []
        for c in speed_cols:
            s, lo, hi = r[c] if isinstance(r[c], tuple) else (None, None, None)
            speeds.append("-" if s is None else f"{s:.2f}x" + (f" [{lo:.2f}-{hi:.2f}]" if lo is not None else ""))
        err = "-" if not _num(r["verify_error"]) else f"{r['verify_error']:.1e}"
        table.add_row(*[escape(str(r[c])) for c in varying], *[r[v] for v in variants], *speeds, err)
    legend = "; ".join(f"{mark} = {text}" for mark, text in MARKS.items())
    table.caption = f"time per iteration; {legend}; speedup = baseline / variant (>1: faster)"
    if hidden:
        table.caption += f"; {hidden:,} more case groups not shown (all are in cases.parquet and the report)"
    return table
