"""The comparison page: NEW against BASE, from :func:`convbench.compare.compare_paths`.

The same verdicts as ``convbench compare`` (ratio NEW/BASE of medians with its bootstrap
95% CI, Mann-Whitney p-value, verdict and reason), drawn as a forest plot (one point per
case, log scale, the threshold band shaded) and listed in a sortable table, under the
headline counts, the pooled suite verdict, the two sides' canaries and the differences
between their machines and software. ``inconclusive``: the change cannot be told from the
machine's (too few samples, a side contended while timed, or the canary moved as much).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from convbench.contention import CONTENDED_MEANING
from convbench.report.data import KEY_COLUMNS, Run, flag, num
from convbench.report.plots import Plot, _finite, _layout, case_hover, esc, log_axis, to_json
from convbench.report.tables import (
    Badge,
    Cell,
    Column,
    Table,
    constant_fields,
    fnum,
    ftime,
    key_cell,
)
from convbench.results import find_runs
from convbench.summary import format_time

#: Plot colour per verdict, in the order of convbench.compare.VERDICTS.
VERDICT_COLORS = {
    "failed": "#b00020", "slower": "#d9480f", "inconclusive": "#e0a800", "faster": "#2b8a3e",
    "added": "#1c7ed6", "removed": "#868e96", "same": "#495057",
}  # fmt: skip


def _side_runs(paths: Sequence[str | Path], runs: list[Run]) -> list[Run]:
    wanted = {p.resolve() for p in find_runs(paths)}
    return [r for r in runs if r.path.resolve() in wanted]


def compare_table(frame: pd.DataFrame) -> tuple[Table, dict[str, str]]:
    """One row per case of the comparison, regressions first (the comparison's order)."""
    varying, constant = constant_fields(frame, KEY_COLUMNS)
    adjusted = "adj_ci_low" in frame and frame["adj_ci_low"].map(num).notna().any()
    columns = [Column(f, f, numeric=f in ("batch", "threads")) for f in varying]
    columns += [
        Column("verdict", "verdict"),
        Column("base", "BASE median", True),
        Column("new", "NEW median", True),
        Column("ratio", "NEW / BASE", True, "ratio of medians (>1: NEW is slower)"),
        Column("ci", "95% CI", True, "bootstrap CI of the ratio; sorts by its lower end"),
        Column("p", "p-value", True, "two-sided Mann-Whitney U test of the raw samples"),
        *([Column("adj", "tested interval", True, "the CI at level 1 - alpha, widened for run-to-run noise; sorts by its lower end")] if adjusted else []),
        Column("status", "status BASE → NEW"),
        Column("reason", "reason"),
    ]
    table = Table("comparison", columns, statuses=[v for v in VERDICT_COLORS if v in set(frame["verdict"])], status_label="verdict")
    for _, row in frame.iterrows():
        ci = _interval(row["ci_low"], row["ci_high"])
        ratio = fnum(row["ratio"], 4)
        if ratio.sort:
            ratio = Cell(f"{float(ratio.sort):.3f}", sort=ratio.sort)
        statuses = f"{row['base_status'] or 'absent'} → {row['new_status'] or 'absent'}"
        table.rows.append([
            *[key_cell(f, row[f]) for f in varying],
            Cell(row["verdict"], sort=row["verdict"], cls=f"verdict verdict-{row['verdict']}", badges=_contended(row)),
            ftime(row["base_median"]), ftime(row["new_median"]), ratio, ci, fnum(row["p_value"], 2),
            *([_interval(row.get("adj_ci_low"), row.get("adj_ci_high"))] if adjusted else []),
            Cell(statuses, sort=statuses), Cell(str(row["reason"] or ""), sort=str(row["reason"] or ""), cls="wrap"),
        ])  # fmt: skip
        table.row_status.append(row["verdict"])
    return table, constant


def _contended(row: pd.Series) -> tuple[Badge, ...]:
    """A ``contended`` badge naming the side(s) contended while timed."""
    sides = [side for side in ("base", "new") if flag(row.get(f"{side}_contended"))]
    if not sides:
        return ()
    names = " and ".join(s.upper() for s in sides)
    return (Badge(f"contended: {names}", "contended", f"{names} contended: {CONTENDED_MEANING}; the reason column says how"),)


def suite_line(suite: dict[str, Any]) -> dict[str, str] | None:
    """The pooled suite verdict: {verdict, text} (None when the comparison has none)."""
    if not suite or not suite.get("verdict"):
        return None
    ratio, low, high = num(suite.get("ratio")), num(suite.get("ci_low")), num(suite.get("ci_high"))
    parts = [f"NEW / BASE {ratio:.3f}" + (f" [{low:.3f} – {high:.3f}]" if low is not None and high is not None else "")] if ratio is not None else []
    parts.append(str(suite.get("reason") or ""))
    return {"verdict": str(suite["verdict"]), "text": "; ".join(p for p in parts if p)}


def canary_line(canary: dict[str, Any]) -> str:
    """The two sides' canaries in words ("" when either side has none)."""
    ratio = num((canary or {}).get("ratio"))
    if ratio is None:
        return ""
    parts = [f"NEW / BASE {ratio:.3f} (BASE {format_time(num(canary.get('base_median')))}, NEW {format_time(num(canary.get('new_median')))})"]
    for side in ("base", "new"):
        drift, contended = num(canary.get(f"{side}_drift")), num(canary.get(f"{side}_contended"))
        if drift is not None:
            parts.append(f"{side.upper()} drifted {drift:.2f}x within its run")
        if contended:
            parts.append(f"{int(contended)} {side.upper()} point{'s' if contended != 1 else ''} contended")
    return "; ".join(parts)


def _interval(low: Any, high: Any) -> Cell:
    lo, hi = num(low), num(high)
    return Cell(f"{lo:.3f} – {hi:.3f}", sort=repr(lo)) if lo is not None and hi is not None else Cell("–")


def forest_plot(frame: pd.DataFrame, threshold: float) -> list[Plot]:
    """NEW/BASE ratio per case with its CI, one trace per verdict (log x axis)."""
    rows = frame[frame["ratio"].map(num).notna()]
    if rows.empty:
        return []
    varying, _ = constant_fields(rows, KEY_COLUMNS)
    label = {cid: esc(" · ".join(str(r[f]) for f in varying)) for cid, (_, r) in zip(rows["case_id"], rows.iterrows(), strict=True)}
    order = list(reversed(list(dict.fromkeys(label.values()))))  # regressions at the top
    data = []
    for verdict, color in VERDICT_COLORS.items():
        part = rows[rows["verdict"] == verdict]
        if part.empty:
            continue
        xs = [num(v) for v in part["ratio"]]
        plus = [None if num(h) is None else max(num(h) - x, 0.0) for x, h in zip(xs, part["ci_high"], strict=True)]
        minus = [None if num(lo) is None else max(x - num(lo), 0.0) for x, lo in zip(xs, part["ci_low"], strict=True)]
        hover = [
            case_hover(r, [esc(f"{verdict}: NEW / BASE {num(r['ratio']):.3f}"),
                           esc(f"BASE {format_time(num(r['base_median']))} · NEW {format_time(num(r['new_median']))}"),
                           esc(str(r["reason"] or ""))])
            for _, r in part.iterrows()
        ]  # fmt: skip
        data.append({
            "type": "scatter", "mode": "markers", "name": esc(verdict), "x": xs, "y": [label[c] for c in part["case_id"]],
            "error_x": {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True},
            "marker": {"color": color, "size": 9}, "hovertext": hover, "hoverinfo": "text",
        })  # fmt: skip
    band = [1 / (1 + threshold), 1 + threshold]
    layout = _layout(
        "NEW / BASE per case", "NEW / BASE median time (log scale; >1: NEW is slower)", "case",
        xaxis=log_axis([*band, *_finite(rows["ratio"], rows["ci_low"], rows["ci_high"])]),
        yaxis={"categoryorder": "array", "categoryarray": order},
        height=max(320, 28 * len(order) + 160), margin={"l": 20},
        shapes=[{"type": "rect", "xref": "x", "yref": "paper", "x0": band[0], "x1": band[1], "y0": 0, "y1": 1,
                 "fillcolor": "#adb5bd", "opacity": 0.2, "line": {"width": 0}, "layer": "below"}],
    )  # fmt: skip
    return [Plot(
        "plot-compare-1", "NEW against BASE",
        f"Ratio of median times NEW / BASE with its bootstrap 95% CI; the shaded band is ±{threshold:.0%}. "
        "Colour: the verdict of convbench compare (hover a case for its reason).",
        to_json({"data": data, "layout": layout}),
    )]  # fmt: skip


def compare_context(comparison: Any, compare: tuple[Sequence[str | Path], Sequence[str | Path]], runs: list[Run], run_pages: dict[str, str]) -> dict[str, Any]:
    """Template variables of compare.html."""
    frame = comparison.table
    table, constant = compare_table(frame)
    return {
        "base_runs": [(r.name, run_pages[r.name]) for r in _side_runs(compare[0], runs)],
        "new_runs": [(r.name, run_pages[r.name]) for r in _side_runs(compare[1], runs)],
        "counts": comparison.counts,
        "threshold": comparison.threshold,
        "alpha": comparison.alpha,
        "untested": comparison.untested,
        "env_diff": comparison.environment_diff,
        "table": table,
        "constant": constant,
        "plots": forest_plot(frame, comparison.threshold),
        "suite": suite_line(getattr(comparison, "suite", None) or {}),
        "canary": canary_line(getattr(comparison, "canary", None) or {}),
        "why_inconclusive": list(getattr(comparison, "why_inconclusive", None) or []),
    }
