"""``convbench history RUN...``: each case's median across runs (ordered by start time),
change points flagged, the series exported with ``--export FILE.csv|.parquet|.json``."""

from __future__ import annotations

import argparse
from typing import Any

STEP_MARKS = {"slower": ("▲", "red"), "faster": ("▼", "green"), "failed": ("✗", "bold red")}


def history_table(hist: Any, last: int) -> Any:
    """A rich table: one row per case, one column per run (the ``last`` latest)."""
    from rich.markup import escape
    from rich.table import Table

    from convbench.compare_render import case_labels, fmt_time

    runs = hist.runs.tail(last) if last > 0 else hist.runs
    t = hist.table
    labels = dict(zip(t["case_id"], case_labels(t), strict=True))
    table = Table(title=f"history of {len(hist.runs)} runs ({len(hist.changes)} change points)", title_justify="left")
    table.add_column("case")
    for _, run in runs.iterrows():
        table.add_column(f"#{run['order']}\n{str(run['started'] or '')[:16]}", justify="right")
    cells = {(r["case_id"], r["order"]): r for _, r in t.iterrows()}
    for cid in dict.fromkeys(t["case_id"]):
        row = [escape(str(labels[cid]))]
        for order in runs["order"]:
            r = cells.get((cid, order))
            if r is None:
                row.append("")
            elif r["status"] != "ok":
                mark = STEP_MARKS.get(r["change"])
                row.append(f"[{mark[1]}]{mark[0]} {r['status']}[/]" if mark else f"[yellow]{r['status']}[/]")
            else:
                text = fmt_time(r["median"])
                mark = STEP_MARKS.get(r["change"])
                if mark:
                    text = f"[{mark[1]}]{mark[0]}{(r['step_ratio'] - 1) * 100:+.0f}% {text}[/]"
                row.append(text)
        table.add_row(*row)
    table.caption = (
        f"median per iteration; ▲/▼ change point: a significant step from the previous run beyond the threshold "
        f"({hist.threshold:.0%}, alpha {hist.alpha:g}, as convbench compare); ✗ newly failing"
    )
    return table


def runs_table(hist: Any) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="runs", title_justify="left")
    for col in ("#", "run", "started", "suite", "revision", "host"):
        table.add_column(col)
    for _, r in hist.runs.iterrows():
        cells = (r["order"], r["run"], r["started"], r["suite"], str(r["git_revision"] or "")[:10], r["host"])
        table.add_row(*[escape(str(c)) for c in cells])
    return table


def cmd_history(args: argparse.Namespace) -> int:
    from convbench.commands.common import UsageError, console
    from convbench.commands.verdicts import parse_fraction, parse_threshold_for
    from convbench.history import history_paths
    from convbench.results import ResultsError

    if args.export and not args.export.lower().endswith((".csv", ".parquet", ".json")):
        raise UsageError(f"--export {args.export}: expected a .csv, .parquet or .json file")
    threshold = parse_fraction(args.threshold)
    alpha = parse_fraction(args.alpha, "alpha")
    if not 0 < alpha < 1:
        raise UsageError(f"alpha {args.alpha!r}: must be between 0 and 1")
    try:
        hist = history_paths(
            args.runs, threshold=threshold, alpha=alpha, thresholds=parse_threshold_for(args.threshold_for or []),
            seed=args.seed, run_noise=not args.no_run_noise,
        )  # fmt: skip
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    console.print(runs_table(hist))
    console.print(history_table(hist, args.last))
    for _, r in hist.changes.iterrows():
        console.print(f"  change at #{int(r['order'])} {r['run']}: {r['case_id']}: {r['change']} ({r['step_reason']})", highlight=False, markup=False)
    if args.export:
        path = hist.export(args.export)
        console.print(f"{len(hist.table)} rows written to {path}", markup=False)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("history", help="each case's median across runs, with change points", description=__doc__)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders, or folders holding runs")
    p.add_argument("--threshold", default="5%", help="smallest step that counts (default 5%%)")
    p.add_argument("--threshold-for", action="append", metavar="PATTERN=VALUE", help="threshold for cases whose id or suite matches PATTERN (repeatable)")
    p.add_argument("--alpha", default="0.01", help="significance level (default 0.01)")
    p.add_argument("--no-run-noise", action="store_true", help="do not widen the CIs by the run-to-run noise")
    p.add_argument("--last", type=int, default=8, help="runs shown in the table (default the 8 latest; 0: all); --export has all")
    p.add_argument("--export", metavar="FILE", help="write the series (one row per case and run) to .csv, .parquet or .json")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_history)
