"""Renderings of comparisons: rich tables, GitHub-flavoured markdown, JSON.

``change`` is NEW/BASE - 1 in percent (+: slower), with its 95% bootstrap CI; a case is
labelled by the key fields that vary across the table (the workload always).
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from convbench.cases import KEY_FIELDS
from convbench.display import is_number
from convbench.ratio_stats import MIN_NOISE_CASES
from convbench.summary import format_time

if TYPE_CHECKING:
    from convbench.compare import Comparison

STYLES = {"failed": "bold red", "slower": "red", "inconclusive": "yellow", "faster": "green", "added": "cyan", "removed": "cyan", "same": "dim"}
#: What each exit code says, in words (docs/compare.md).
EXIT_WORDS = {0: "no regression", 1: "regression", 3: "inconclusive"}
SHORT = {"batch": "b", "threads": "t"}


def _key_value(field: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{SHORT[field]}-" if field in SHORT else "-"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{SHORT[field]}{value}" if field in SHORT else str(value)


def case_labels(frame: pd.DataFrame, fields: tuple[str, ...] = KEY_FIELDS) -> pd.Series:
    """A short label per row: the key fields that vary across ``frame`` (workload always)."""
    present = [f for f in fields if f in frame.columns]
    varying = [f for f in present if f == "workload" or frame[f].map(str).nunique() > 1]
    if frame.empty:
        return pd.Series([], dtype=str)
    return frame.apply(lambda r: " ".join(_key_value(f, r[f]) for f in varying), axis=1)


def fmt_change(ratio: Any, low: Any = None, high: Any = None) -> str:
    """``+12.3% [+8.0%, +16.1%]`` from a ratio and its CI; ``-`` when unknown."""
    if not is_number(ratio):
        return "-"
    text = f"{(ratio - 1) * 100:+.1f}%"
    if is_number(low) and is_number(high):
        text += f" [{(low - 1) * 100:+.1f}%, {(high - 1) * 100:+.1f}%]"
    return text


def fmt_p(p: Any) -> str:
    return f"{p:.2g}" if is_number(p) else "-"


def fmt_time(value: Any) -> str:
    return format_time(value) if is_number(value) else "-"


def _runs_line(runs: list[dict[str, Any]]) -> str:
    parts = []
    for r in runs:
        rev = str(r.get("git_revision") or "unknown revision")
        rev = rev[:10] if len(rev) == 40 else rev
        dirty = "+dirty" if r.get("git_dirty") else ""
        parts.append(f"{r.get('name')} (suite {r.get('suite')}, {rev}{dirty}, {r.get('started')}, host {r.get('host')})")
    return "; ".join(parts) or "-"


def noise_text(cmp: Comparison) -> str:
    """The run-to-run noise estimated per backend/device, in words."""
    if not cmp.run_noise:
        return "run-to-run noise: not estimated (turned off)"
    if not cmp.noise:
        return f"run-to-run noise: not estimated (fewer than {MIN_NOISE_CASES} tested cases)"
    parts = ", ".join(f"{k} ±{v:.0%}" for k, v in sorted(cmp.noise.items()))
    return f"run-to-run noise estimated from the cases (widens every CI): {parts}"


def headline(cmp: Comparison) -> str:
    """``2 slower, 1 failed, 0 inconclusive, 3 faster, 20 same, 1 added, 0 removed``."""
    c = cmp.counts
    return ", ".join(f"{c[v]} {v}" for v in ("slower", "failed", "inconclusive", "faster", "same", "added", "removed"))


def rule_text(cmp: Comparison) -> str:
    if cmp.method == "ab":
        test = (
            f"p < {cmp.alpha:g} on the paired per-round ratios (Wilcoxon signed-rank within one process pair; "
            "a random-effects z-test across several), their CI excluding no change"
        )
        change = "median of the per-round ratios NEW/BASE - 1 with its 95% CI (pooled across process pairs)"
    else:
        test = f"Mann-Whitney U p < {cmp.alpha:g}, bootstrap CI excluding no change"
        change = "NEW/BASE - 1 with its 95% bootstrap CI"
    return (
        f"slower/faster: significant ({test}) and the ratio NEW/BASE beyond the threshold ({cmp.threshold:.1%} "
        f"unless a pattern sets another); inconclusive: too few samples, a side contended while timed, or the "
        f"machine itself changed speed (canary); change = {change}; the gate fails on: {', '.join(cmp.fail_on)}"
    )


def status_text(cmp: Comparison) -> str:
    """The exit code in words, with why when inconclusive."""
    code = cmp.exit_code
    words = EXIT_WORDS.get(code, str(code))
    if cmp.inconclusive and code != 1:
        why = "; ".join(cmp.why_inconclusive)
        accepted = " (accepted: --inconclusive-ok)" if cmp.inconclusive_ok else ""
        return f"{words}{accepted}: {why}"
    return words


def suite_text(cmp: Comparison) -> str:
    """The pooled suite-level verdict in words."""
    s = cmp.suite
    return f"suite verdict (pooled over cases): {s.get('verdict', '-')}: {s.get('reason', 'not computed')}" if s else ""


def canary_text(cmp: Comparison) -> str:
    """The canaries of both sides in words."""
    c = cmp.canary
    if not c:
        return "canary: not recorded on both sides (runs older than the canary)"
    drift = ", ".join(
        f"{side} drifted {c[f'{side.lower()}_drift']:.2f}x" for side in ("BASE", "NEW") if c.get(f"{side.lower()}_drift")
    )
    return f"canary NEW/BASE {c['ratio']:.3f} ({fmt_time(c['base_median'])} vs {fmt_time(c['new_median'])}{'; ' + drift if drift else ''})"


# --------------------------------------------------------------------------- rich
def comparison_rich(cmp: Comparison, only_changes: bool = False) -> Group:
    """Runs, environment differences, then one row per case (regressions first)."""
    parts: list[Any] = [
        Text.assemble(("BASE ", "bold"), _runs_line(cmp.base_runs)),
        Text.assemble(("NEW  ", "bold"), _runs_line(cmp.new_runs)),
    ]
    if cmp.method == "compare":
        parts += [Text(noise_text(cmp)), Text(canary_text(cmp))]
    if cmp.suite:
        parts.append(Text(suite_text(cmp), style=STYLES.get(cmp.suite.get("verdict", ""), "")))
    if cmp.environment_diff:
        env = Table(title="[yellow]the runs saw different machines or software[/]", title_justify="left")
        for col in ("field", "BASE", "NEW"):
            env.add_column(col)
        for d in cmp.environment_diff:
            env.add_row(escape(str(d["field"])), escape(str(d["base"])), escape(str(d["new"])))
        parts.append(env)
    table = cmp.table if not only_changes else cmp.table[cmp.table["verdict"] != "same"]
    labels = case_labels(cmp.table).reindex(table.index)
    grid = Table(title=escape(f"convbench compare: {headline(cmp)}"), title_justify="left")
    for col, just in (("verdict", "left"), ("case", "left"), ("BASE", "right"), ("NEW", "right"), ("change [95% CI]", "right"), ("p", "right"), ("thr.", "right"), ("reason", "left")):
        grid.add_column(col, justify=just)  # type: ignore[arg-type]
    for idx, r in table.iterrows():
        style = STYLES.get(r["verdict"], "")
        grid.add_row(
            f"[{style}]{escape(str(r['verdict']))}[/]", escape(str(labels[idx])), fmt_time(r["base_median"]), fmt_time(r["new_median"]),
            fmt_change(r["ratio"], r["ci_low"], r["ci_high"]), fmt_p(r["p_value"]), f"{r['threshold']:.0%}", escape(str(r["reason"] or "")),
        )  # fmt: skip
    grid.caption = rule_text(cmp)
    parts.append(grid if len(table) else Text(f"convbench compare: {headline(cmp)}", style="bold"))
    if cmp.untested:
        parts.append(Text(f"{cmp.untested} case(s) had too few samples to test: raise the suite's min_samples", style="yellow"))
    parts.append(Text(f"exit {cmp.exit_code}: {status_text(cmp)}", style="bold"))
    return Group(*parts)


# --------------------------------------------------------------------------- markdown
#: Characters Markdown (GitHub's included) gives a meaning: backslash-escaped in text.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def _md(text: Any) -> str:
    """``text`` as literal Markdown text on one line: HTML's ``& < >`` as entities (the
    step summary renders HTML), Markdown's punctuation backslash-escaped, so a suite or
    workload name can neither break a table nor add a link, an image or markup."""
    plain = html.escape(str("" if text is None else text).replace("\r", " ").replace("\n", " "), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", plain)


def _md_table(frame: pd.DataFrame, labels: pd.Series, max_rows: int) -> list[str]:
    lines = ["| verdict | case | BASE | NEW | change [95% CI] | p | reason |", "|---|---|--:|--:|--:|--:|---|"]
    for idx, r in frame.head(max_rows).iterrows():
        lines.append(
            f"| {_md(r['verdict'])} | {_md(labels[idx])} | {fmt_time(r['base_median'])} | {fmt_time(r['new_median'])} "
            f"| {fmt_change(r['ratio'], r['ci_low'], r['ci_high'])} | {fmt_p(r['p_value'])} | {_md(r['reason'])} |"
        )
    if len(frame) > max_rows:
        lines.append(f"\n... and {len(frame) - max_rows} more (see `--format csv` or `--format json`)")
    return lines


def comparison_markdown(cmp: Comparison, max_rows: int = 300) -> str:
    """A GitHub step summary / pull-request comment: headline, runs, environment
    differences, the regressions (verdicts in ``fail_on``) in the open, the rest in
    collapsed ``<details>`` sections."""
    t = cmp.table
    labels = case_labels(t)
    bad = t[t["verdict"].isin(cmp.fail_on)]
    status = EXIT_WORDS.get(cmp.exit_code, str(cmp.exit_code))
    lines = [f"## convbench {cmp.method}: {status}", "", f"**{_md(headline(cmp))}**", ""]
    if cmp.inconclusive and cmp.exit_code != 1:
        lines += [f"> **Inconclusive** (exit {cmp.exit_code}): {_md(status_text(cmp))}", ""]
    lines += [f"- BASE: {_md(_runs_line(cmp.base_runs))}", f"- NEW: {_md(_runs_line(cmp.new_runs))}"]
    lines += [f"- {_md(noise_text(cmp))}", f"- {_md(canary_text(cmp))}"] if cmp.method == "compare" else []
    lines += [f"- {_md(suite_text(cmp))}", ""] if cmp.suite else [""]
    if cmp.environment_diff:
        lines += ["> **Note:** the runs saw different machines or software; differences can come from them.", ""]
        env = ["| what | BASE | NEW |", "|---|---|---|"] + [f"| {_md(d['field'])} | {_md(d['base'])} | {_md(d['new'])} |" for d in cmp.environment_diff]
        if len(cmp.environment_diff) > 12:
            lines += [f"<details><summary>{len(cmp.environment_diff)} differences</summary>", "", *env, "", "</details>", ""]
        else:
            lines += [*env, ""]
    if cmp.untested:
        lines += [f"> **Note:** {cmp.untested} case(s) had too few samples to test (verdict `inconclusive`, reason `not tested`).", ""]
    if len(bad):
        lines += [f"### Regressions ({len(bad)})", "", *_md_table(bad, labels, max_rows), ""]
    for verdict in ("slower", "failed", "inconclusive", "faster", "added", "removed", "same"):
        if verdict in cmp.fail_on:
            continue
        part = t[t["verdict"] == verdict]
        if len(part):
            lines += [f"<details><summary>{len(part)} {verdict}</summary>", "", *_md_table(part, labels, max_rows), "", "</details>", ""]
    lines += [f"<sub>{_md(rule_text(cmp))}</sub>", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- json
def comparison_json(cmp: Comparison) -> str:
    from convbench.compare import to_jsonable

    return json.dumps(
        {
            "base": cmp.base_runs,
            "new": cmp.new_runs,
            "threshold": cmp.threshold,
            "alpha": cmp.alpha,
            "fail_on": list(cmp.fail_on),
            "method": cmp.method,
            "counts": cmp.counts,
            "exit_code": cmp.exit_code,
            "status": status_text(cmp),
            "suite_verdict": cmp.suite,
            "canary": cmp.canary,
            "run_noise": cmp.noise if cmp.run_noise else None,
            "environment_diff": cmp.environment_diff,
            "cases": to_jsonable(cmp.table),
        },
        indent=2,
        default=str,
    )


# --------------------------------------------------------------------------- within a run
def _speed(r: pd.Series) -> str:
    if not is_number(r["speedup"]):
        return str(r["note"] or "-") if isinstance(r["note"], str) else "-"
    text = f"{r['speedup']:.2f}x"
    if is_number(r["speedup_ci_low"]) and is_number(r["speedup_ci_high"]):
        text += f" [{r['speedup_ci_low']:.2f}-{r['speedup_ci_high']:.2f}]"
    return text + ("" if r["source"] == "interleaved" else "†")


def within_pivot(frame: pd.DataFrame, by: str) -> tuple[pd.DataFrame, list[str]]:
    """One row per case (without ``by``), one column per ``by`` value: the speedup cell."""
    keys = [c for c in frame.columns if c in (*KEY_FIELDS, "run_dir") and c != by]
    values = list(dict.fromkeys(frame[by].map(str)))
    frame = frame.assign(_label=case_labels(frame, tuple(k for k in (*KEY_FIELDS, "run_dir") if k in keys)) if len(frame) else [], _cell=frame.apply(_speed, axis=1) if len(frame) else [])
    rows = []
    for label, group in frame.groupby("_label", sort=False):
        row = {"case": label, "baseline median": fmt_time(group["baseline_median"].iloc[0])}
        row.update({str(v): c for v, c in zip(group[by].map(str), group["_cell"], strict=True)})
        rows.append(row)
    return pd.DataFrame(rows, columns=["case", "baseline median", *values]), values


def within_rich(frame: pd.DataFrame, by: str, baseline: str) -> Table:
    pivot, values = within_pivot(frame, by)
    table = Table(title=escape(f"speedup over {by} {baseline} (baseline time / time; >1: faster)"), title_justify="left")
    for col in pivot.columns:
        table.add_column(escape(str(col)), justify="left" if col == "case" else "right")
    for _, r in pivot.iterrows():
        table.add_row(*[escape(r[c]) if isinstance(r[c], str) else "" for c in pivot.columns])
    table.caption = "[95% CI]; plain: per-round ratios measured side by side (interleaved); † ratio of medians of separate measurements"
    return table


def within_markdown(frame: pd.DataFrame, by: str, baseline: str) -> str:
    pivot, _ = within_pivot(frame, by)
    cols = list(pivot.columns)
    lines = [f"### Speedup over {_md(by)} {_md(baseline)}", "", "| " + " | ".join(map(_md, cols)) + " |", "|" + "|".join(["---"] + ["--:"] * (len(cols) - 1)) + "|"]
    for _, r in pivot.iterrows():
        lines.append("| " + " | ".join(_md(r[c]) if isinstance(r[c], str) else "" for c in cols) + " |")
    lines += ["", "<sub>speedup = baseline time / time [95% CI]; † ratio of medians of separate measurements, else per-round interleaved ratios</sub>", ""]
    return "\n".join(lines)
