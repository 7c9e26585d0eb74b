"""``convbench run`` and ``convbench check``: the main job, and verification alone."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from convbench.cases import Case
from convbench.commands.common import (
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    announce_interpreters,
    console,
    default_out,
    err_console,
    execute,
    load_cases,
    options_from,
    pinning_for,
    run_meta,
    status_counts,
)

#: The order of this module's commands in ``convbench --help`` (the main job first).
ORDER = 0


#: Cases ``--dry-run`` lists at most (it always says how many there are).
MAX_LISTED_CASES = 500


def _matrix_table(cases: list[Case], limit: int = MAX_LISTED_CASES) -> Table:
    from convbench.cases import KEY_FIELDS

    table = Table(title=f"{len(cases)} cases")
    for f in KEY_FIELDS:
        table.add_column(f)
    for c in cases[:limit]:
        table.add_row(*[escape(str(getattr(c, f))) for f in KEY_FIELDS])
    if len(cases) > limit:
        table.caption = f"the first {limit:,} of {len(cases):,} cases (--filter narrows them)"
    return table


def cmd_run(args: argparse.Namespace) -> int:
    from convbench.cpu_topology import parse_cpu_list
    from convbench.results import ResultsError, RunFolder
    from convbench.runner import RunOptions
    from convbench.summary import (
        contention_lines,
        status_lines,
        summary_table,
        without_skipped_groups,
    )
    from convbench.timing import TimingConfig

    fleet = _connect_fleet(args) if getattr(args, "cluster", None) else None
    spec = None  # the cpus pinning spec of a new run
    if args.resume and (args.filter or args.preset or args.suite):
        given = ", ".join(n for n, v in (("SUITE", args.suite), ("--filter", args.filter), ("--preset", args.preset)) if v)
        raise UsageError(f"--resume {args.resume} finishes the cases that run planned; it takes no {given} (start a new run to choose others)")
    if args.resume:
        try:
            folder = RunFolder.open(Path(args.resume), resume=True)
        except ResultsError as exc:
            raise UsageError(str(exc)) from None
        record = folder.record  # checked by open(resume=True): plan and options are there
        cases = [Case.model_validate(c) for c in record.cases]
        opts = record.options
        options = RunOptions(TimingConfig.model_validate(opts.timing), opts.timeout, opts.tolerance, opts.interpreters)
        if (opts.cpus or {}).get("cpus") and not fleet:  # pinned runs resume on the same CPUs
            options.cpus = tuple(parse_cpu_list(opts.cpus["cpus"]))
        from convbench.runner import finished_planned  # a fleet plans with unset threads

        done = len(finished_planned(folder, cases))
        err_console.print(f"Resuming {folder.path}: {done} of {len(cases)} cases already finished", markup=False)
        folder.meta["status"] = "running"
    else:
        if not args.suite:
            raise UsageError("convbench run: give a SUITE file, or --resume DIR")
        suite, cases, resolved = load_cases(args, resolve=fleet is None)
        if args.dry_run:
            console.print(_matrix_table(cases))
            console.print(f"{len(cases)} cases from {args.suite}" + (f" (preset {args.preset})" if args.preset else ""), markup=False)
            announce_interpreters(cases, resolved.interpreters)
            return EXIT_OK
        if not cases:
            raise UsageError(f"{args.suite}: the filter and preset leave no case to run")
        announce_interpreters(cases, resolved.interpreters)
        options = options_from(resolved, pin=fleet is None)
        pinning = pinning_for(resolved) if fleet is None else None
        spec = getattr(resolved, "cpus", None)
        out = Path(args.out) if args.out else default_out(suite.name)
        meta = run_meta(args, suite, cases, options, pinning, spec)
        try:
            folder = RunFolder.create(out, meta)
        except ResultsError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:  # --out is a file, a read-only folder, a full disk...
            raise UsageError(f"--out {out}: cannot create the run folder: {exc.strerror or exc}") from None
    if fleet:
        fleet["placement"] = fleet["placement"] or (folder.record.fleet or {}).get("placement") or []
        recorded = (folder.record.options.cpus or {}).get("spec")
        fleet["cpus"] = str(spec) if spec else recorded
        folder.meta["fleet"] = fleet
        folder.save_meta()
    try:
        completed = execute(folder, cases, options, folder.record.suite or "run", fleet)
    except OSError as exc:  # the disk filled up, or the folder went away: what was written stays
        with contextlib.suppress(OSError):
            folder.finish("interrupted")
        err_console.print(f"[bold red]error[/]: writing to {escape(str(folder.path))} failed: {escape(exc.strerror or str(exc))}")
        err_console.print(f"The cases finished before it are kept. Make room, then: [bold]convbench run --resume {escape(str(folder.path))}[/]")
        return EXIT_FAIL
    frame = folder.frame()
    if not completed:
        folder.finish("interrupted")
        err_console.print(f"\n[bold yellow]Interrupted[/]: {len(frame)} of {len(cases)} cases finished and saved in {escape(str(folder.path))}")
        err_console.print(f"Resume with: [bold]convbench run --resume {escape(str(folder.path))}[/]")
        return EXIT_INTERRUPTED
    folder.finish("complete")
    if len(without_skipped_groups(frame)):
        console.print(summary_table(frame, title=escape(f"{folder.record.suite}: {folder.path}")))
    for line in status_lines(frame):
        console.print(f"  {line}", highlight=False, markup=False)
    for line in contention_lines(frame):
        console.print(line, highlight=False, markup=False)
    console.print(f"{len(frame)} cases: {status_counts(frame)}. Results in {folder.path}", markup=False)
    return EXIT_OK


def _connect_fleet(args: argparse.Namespace) -> dict[str, Any]:
    """Check ``--place`` and connect to the Ray cluster of ``--cluster`` (before any run
    folder is made); a missing ray or an unreachable cluster is a usage error."""
    from convbench.fleet import FleetError, connect

    try:
        return connect(args.cluster, args.place or [])
    except FleetError as exc:
        raise UsageError(str(exc)) from None


def cmd_check(args: argparse.Namespace) -> int:
    import pandas as pd

    from convbench.results import RunFolder

    suite, cases, resolved = load_cases(args)
    if not cases:  # a gate that checks nothing must not pass
        raise UsageError(f"{args.suite}: the filter and preset leave no case to check")
    announce_interpreters(cases, resolved.interpreters)
    options = options_from(resolved, verify_only=True)
    with tempfile.TemporaryDirectory(prefix="convbench-check-") as tmp:
        folder = RunFolder.create(Path(tmp) / "run", {"suite": suite.name, "cases": []})
        if not execute(folder, cases, options, f"check {suite.name}"):
            return EXIT_INTERRUPTED
        frame = folder.frame()
    failed = bool(frame["status"].isin(["mismatch", "error"]).any())
    if args.json:
        print(frame.to_json(orient="records"))
        return EXIT_FAIL if failed else EXIT_OK
    table = Table(title=escape(f"verification of {args.suite}"))
    for col in ("case", "status", "rel. error", "tolerance", "reason"):
        table.add_column(col)
    for _, r in frame.iterrows():
        err = "-" if pd.isna(r["verify_error"]) else f"{r['verify_error']:.2e}"
        tol = "-" if pd.isna(r["verify_tolerance"]) else f"{r['verify_tolerance']:g}"
        style = {"ok": "green", "mismatch": "red", "error": "red"}.get(r["status"], "yellow")
        reason = r["reason"] if isinstance(r["reason"], str) else ""
        table.add_row(escape(r["case_id"]), f"[{style}]{escape(r['status'])}[/]", err, tol, escape(reason))
    console.print(table)
    console.print(f"{len(frame)} cases: {status_counts(frame)}")
    return EXIT_FAIL if failed else EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers
    run = sub.add_parser("run", help="run a suite: verify every case, then time it")
    run.add_argument("suite", nargs="?", help="suite YAML file, or the name of a packaged suite (convbench list --suites)")
    run.add_argument("--preset", help="a preset of the suite (e.g. quick, full)")
    run.add_argument("--filter", help="a condition over case keys, e.g. \"mode == 'training' and batch == 1\" (README: --filter)")
    run.add_argument("--dry-run", action="store_true", help="print the expanded matrix and its size, run nothing")
    run.add_argument("--resume", metavar="DIR", help="finish an interrupted run folder")
    run.add_argument("--out", metavar="DIR", help="run folder to create (default results/SUITE-TIME-HOST)")
    run.add_argument("--cpus", metavar="SPEC", help="pin the workers to a core cluster (big, little, clusterN; see `convbench env`) or a CPU list like 0-3; threads default to the pinned count (replaces the suite's cpus)")
    run.add_argument("--cluster", metavar="ADDRESS", help="run the cases on the Ray cluster at ADDRESS (host:port, or auto); see docs/fleet.md")
    run.add_argument("--place", action="append", metavar="DEVICE:LABEL[=QUERY]", help="with --cluster: cases (matching QUERY) need a node offering this device, e.g. cpu:aarch64 (repeatable, first match wins)")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="verify every case of a suite against the reference, no timing")
    check.add_argument("suite", help="suite YAML file, or the name of a packaged suite")
    check.add_argument("--preset")
    check.add_argument("--filter")
    check.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    check.set_defaults(func=cmd_check)
