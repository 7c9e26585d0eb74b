"""``convbench pytest-benchmark import FILE -o DIR`` and ``convbench pytest-benchmark export
RUN -o FILE``: pytest-benchmark's JSON to a run folder and back (see convbench.interop).

``convbench import pytest-benchmark FILE -o DIR`` is the same import (``import`` has no
other meaning). ``convbench export`` writes a workload as ONNX (:mod:`.onnx_export`)."""

from __future__ import annotations

import argparse


def cmd_import(args: argparse.Namespace) -> int:
    from convbench.commands.common import UsageError, console
    from convbench.interop import import_pytest_benchmark
    from convbench.results import ResultsError

    try:
        folder = import_pytest_benchmark(args.file, args.output, suite=args.suite)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    with_data = sum(1 for r in folder.rows if any(s["case_id"] == r["case_id"] for s in folder.samples))
    console.print(
        f"{len(folder.rows)} benchmarks from {args.file} -> {folder.path} "
        f"({with_data} with raw samples; without them compare cannot test a case: save with --benchmark-save-data)",
        highlight=False,
        markup=False,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from convbench.commands.common import UsageError, console
    from convbench.interop import export_pytest_benchmark
    from convbench.results import ResultsError

    try:
        path, written, left_out = export_pytest_benchmark(args.run, args.output)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    note = f"; {left_out} cases not timed (skipped, failed or verify-only) left out" if left_out else ""
    console.print(f"{written} benchmarks -> {path}{note}. Read it with: pytest-benchmark compare {path}", highlight=False, markup=False)
    return 0


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="pytest-benchmark JSON file")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="run folder to create")
    p.add_argument("--suite", help="suite name to record (default pytest-benchmark)")
    p.set_defaults(func=cmd_import)


IMPORT_HELP = "pytest-benchmark JSON (--benchmark-json, or --benchmark-save with --benchmark-save-data) -> a run folder"
EXPORT_HELP = "a run folder -> pytest-benchmark JSON, readable by `pytest-benchmark compare`"


def register(subparsers: argparse._SubParsersAction) -> None:
    pb = subparsers.add_parser("pytest-benchmark", help="convert between pytest-benchmark's JSON and run folders")
    pb_sub = pb.add_subparsers(dest="direction", required=True, metavar="import|export")
    _import_args(pb_sub.add_parser("import", help=IMPORT_HELP))
    p = pb_sub.add_parser("export", help=EXPORT_HELP)
    p.add_argument("run", metavar="RUN", help="run folder")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="JSON file to write")
    p.set_defaults(func=cmd_export)

    imp = subparsers.add_parser("import", help="import results of another tool into a run folder")
    imp_sub = imp.add_subparsers(dest="format", required=True, metavar="FORMAT")
    _import_args(imp_sub.add_parser("pytest-benchmark", help=IMPORT_HELP + " (= convbench pytest-benchmark import)"))
