"""``convbench profile``: where the time of each case goes, by the framework's own profiler.

    convbench profile SUITE [--preset P] [--filter EXPR] [--steps N] [--cpus SPEC] [--out DIR]

Prints, per case, milliseconds per step and the share of each category (depthwise,
pointwise, other conv, batchnorm, activation, pool, linear, elementwise, other; see
:mod:`convbench.profile`) and saves every row in ``DIR/profile.parquet``. ``--out`` names
a new run folder (default ``results/SUITE-profile-TIME-HOST``) or an existing run folder,
whose run.json then records the profile beside the run (``profile``: the options, and
under ``backends`` each worker's environment, its CPU affinity included). The cases are
scheduled by the runner, so ``--cpus`` (or the suite's ``cpus``) pins the workers as for
``convbench run``. Exit code 1 when a case fails.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("profile", help="per-op time breakdown of each case, from the framework's profiler")
    p.add_argument("suite", help="suite YAML file")
    p.add_argument("--preset", help="a preset of the suite (e.g. quick, full)")
    p.add_argument("--filter", help="a condition over case keys, e.g. \"variant == 'native'\" (as for run)")
    p.add_argument("--steps", type=int, default=10, help="profiled steps per case (default 10)")
    p.add_argument("--cpus", metavar="SPEC", help="pin the workers as `convbench run --cpus` does (replaces the suite's cpus)")
    p.add_argument("--out", metavar="DIR", help="run folder to create or to add the profile to")
    p.set_defaults(func=cmd_profile)


def cmd_profile(args: argparse.Namespace) -> int:
    from convbench.commands.common import (
        EXIT_FAIL,
        EXIT_OK,
        UsageError,
        console,
        default_out,
        err_console,
        load_cases,
        options_from,
        pinning_for,
        run_meta,
    )
    from convbench.profile_runner import profile_cases
    from convbench.results import ResultsError, RunFolder, now_iso

    if args.steps < 1:
        raise UsageError(f"--steps {args.steps}: expected a positive number of steps")
    suite, cases, resolved = load_cases(args)
    if not cases:
        raise UsageError(f"{args.suite}: the filter and preset leave no case to profile")
    options = options_from(resolved)
    pinning = pinning_for(resolved)
    record = {
        "steps": args.steps, "preset": args.preset, "filter": args.filter, "suite_path": str(args.suite),
        "cpus": pinning.record() if pinning else None, "started": now_iso(),
    }  # fmt: skip
    out = Path(args.out) if args.out else default_out(f"{suite.name}-profile")
    try:
        if (out / "run.json").exists():  # beside a run: its own record is left as it is
            folder = RunFolder.open(out)
            folder.meta["profile"] = record
            folder.save_meta()
        else:
            meta = {"kind": "profile", **run_meta(args, suite, cases, options, pinning), "profile": record}
            folder = RunFolder.create(out, meta)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the run folder: {exc.strerror or exc}") from None

    def progress(row: dict[str, Any]) -> None:
        err_console.print(f"profiled {row['case_id']}: {row['status']}", highlight=False, markup=False)

    try:
        frame = profile_cases(folder, cases, options, args.steps, progress)
        folder.meta["profile"]["finished"] = now_iso()
        if folder.meta.get("kind") == "profile":
            folder.meta["status"] = "complete"
        folder.save_meta()
    finally:
        folder.close()
    console.print(profile_table(frame, escape(f"{suite.name}: share of time per category ({out / 'profile.parquet'})")))
    statuses = frame.drop_duplicates("case_id")
    for reason, count in statuses.loc[statuses["status"] != "ok", "reason"].value_counts().items():
        console.print(f"  {count} x {reason}", highlight=False, markup=False)
    return EXIT_FAIL if statuses["status"].isin(["error", "mismatch"]).any() else EXIT_OK


def profile_table(frame: Any, title: str) -> Any:
    """A rich table: one row per case, ms/step and the percentage of each category."""
    from rich.table import Table

    from convbench.profile import shares

    table = Table(title=title)
    share = shares(frame)
    columns = list(share.columns)
    table.add_column("case")
    for c in columns:
        table.add_column(c, justify="right")
    table.add_column("status")
    for _, r in frame.drop_duplicates("case_id").iterrows():
        label = f"{r['workload']} {r['variant']} {r['backend']}:{r['device']} {r['mode']} b{r['batch']} {r['dtype']} {r['layout']} {r['execution']}"
        cells = [escape(label)]
        if r["case_id"] in share.index:
            values = share.loc[r["case_id"]]
            cells += [f"{values[c]:.3g}" if c == "ms/step" else f"{values[c]:.0f}%" for c in columns]
        else:
            cells += ["-"] * len(columns)
        table.add_row(*cells, escape(str(r["status"])))
    return table


