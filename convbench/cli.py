"""convbench's command line: run, check, list, env."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from convbench import __version__
from convbench.cases import Case


def _console(stderr: bool = False) -> Console:
    """A console; when output is not a terminal, wide enough for the summary table."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=max(probe.width, 180))


console = _console()
err_console = _console(stderr=True)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad input from the user: printed as one message, exit code 2."""


# --------------------------------------------------------------------------- helpers
def _load_cases(args: argparse.Namespace, resolve: bool = True) -> tuple[Any, list[Case], Any]:
    """Suite, its expanded (preset, filter) cases and its resolved options; ``resolve``
    sets unset CPU threads to this machine's cores (a fleet leaves that to each node)."""
    from convbench.suite import SuiteError, expand, filter_cases, load_suite, locate_suite

    args.suite = str(locate_suite(args.suite))  # a bare name is a packaged suite
    try:
        suite = load_suite(args.suite)
        resolved = suite.resolved(args.preset)
        cases = expand(suite, args.preset)
        if args.filter:
            cases = filter_cases(cases, args.filter)
    except SuiteError as exc:
        raise UsageError(str(exc)) from None
    if getattr(args, "cpus", None):  # --cpus replaces the suite's cpus
        resolved = dataclasses.replace(resolved, cpus=args.cpus)
    if getattr(args, "cpus", None):
        option = "--cpus"
    else:  # the suite's file, line and field
        field = f"presets.{args.preset}.cpus" if args.preset and suite.preset(args.preset).cpus is not None else "cpus"
        option = f"{suite.where(field)}:"
    pinning = _pinning(resolved, option) if resolve else None
    cores = len(pinning.cpus) if pinning else None
    return suite, [_resolve_threads(c, cores) for c in cases] if resolve else cases, resolved


def _resolve_threads(case: Case, cores: int | None = None) -> Case:
    """CPU cases name their thread count explicitly: None means every core (every
    pinned core when the workers are pinned)."""
    if case.device == "cpu" and case.threads is None:
        return case.model_copy(update={"threads": cores or os.cpu_count() or 1})
    return case


def _pinning(resolved: Any, option: str = "cpus"):  # noqa: ANN202 - Pinning | None
    """The CPUs the suite's (or --cpus') ``cpus`` names on this machine, or None."""
    from convbench.cpu_topology import CpuSpecError, available_cpus, clusters, resolve_cpus

    spec = getattr(resolved, "cpus", None)
    if not spec:
        return None
    try:
        return resolve_cpus(str(spec), clusters(), available_cpus(), option=option)
    except CpuSpecError as exc:
        raise UsageError(str(exc)) from None


def slug(text: str, limit: int = 60) -> str:
    """``text`` as one safe path component: letters, digits, ``.``, ``_`` and ``-`` kept,
    any other run of characters (and of dots) one ``-``; no leading dot or dash, at
    most ``limit`` characters; ``run`` when nothing is left."""
    cleaned = re.sub(r"(?:[^A-Za-z0-9._-]|\.\.+)+", "-", text)
    cleaned = re.sub(r"-+", "-", cleaned).lstrip(".-")[:limit].rstrip(".-")
    return cleaned or "run"


def _default_out(label: str) -> Path:
    """``results/LABEL-TIME-HOST`` with LABEL (a suite's name, which the suite file sets)
    and the host name made safe path components: a name like ``../../x`` or ``/etc``
    stays inside ``results/``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{slug(label)}-{stamp}-{slug(socket.gethostname())}"


def _options_from(resolved: Any, verify_only: bool = False, pin: bool = True):  # noqa: ANN202
    """Runner options; ``pin=False`` leaves the ``cpus`` spec to the machines that run
    the cases (a fleet: each node resolves it against its own CPUs)."""
    from convbench.runner import RunOptions

    pinning = _pinning(resolved) if pin else None
    return RunOptions(
        timing=resolved.timing,
        timeout=resolved.timeout,
        tolerance=dict(resolved.tolerance),
        interpreters={k: str(v) for k, v in resolved.interpreters.items()},
        verify_only=verify_only,
        cpus=pinning.cpus if pinning else None,
    )


def _matrix_table(cases: list[Case]) -> Table:
    from convbench.cases import KEY_FIELDS

    table = Table(title=f"{len(cases)} cases")
    for f in KEY_FIELDS:
        table.add_column(f)
    for c in cases:
        table.add_row(*[escape(str(getattr(c, f))) for f in KEY_FIELDS])
    return table


def _execute(folder, cases: list[Case], options, title: str, fleet: dict[str, Any] | None = None, runner: Any = None, total: int | None = None) -> bool:  # noqa: ANN001
    """Run ``cases`` into ``folder`` with a progress bar; False when interrupted.
    ``runner`` (called with the result callback) replaces the local runner (``ab``)."""
    from convbench.fleet import finished_planned  # (no ray import) unset threads match any
    from convbench.runner import Runner

    todo = total if total is not None else len(cases) - len(finished_planned(folder, cases))
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=False) as progress:
        title = escape(title)  # the suite's name: text, not markup
        task = progress.add_task(title, total=todo)

        def on_result(row: dict[str, Any]) -> None:
            case = escape(f"{row['workload']} {row['variant']} {row['mode']} b{row['batch']} -> {row['status']}")
            progress.update(task, advance=1, description=f"{title}: {case}")

        if runner is not None:
            chosen = runner(on_result)
        elif fleet:  # --cluster: convbench.fleet places the cases on a Ray cluster
            from convbench.fleet import fleet_runner

            chosen = fleet_runner(folder, options, on_result, fleet)
        else:
            chosen = Runner(folder, options, on_result)
        try:
            chosen.run(cases)
        except KeyboardInterrupt:
            return False
    return True


def _status_counts(frame) -> str:  # noqa: ANN001
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    return ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "mismatch", "skipped", "error"))


# --------------------------------------------------------------------------- commands
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
            folder = RunFolder.open(Path(args.resume))
        except ResultsError as exc:
            raise UsageError(str(exc)) from None
        meta = folder.meta
        cases = [Case.model_validate(c) for c in meta["cases"]]
        opts = meta["options"]
        options = RunOptions(TimingConfig.model_validate(opts["timing"]), opts["timeout"], opts["tolerance"], opts["interpreters"])
        if (opts.get("cpus") or {}).get("cpus") and not fleet:  # pinned runs resume on the same CPUs
            options.cpus = tuple(parse_cpu_list(opts["cpus"]["cpus"]))
        from convbench.fleet import finished_planned  # a fleet plans with unset threads

        done = len(finished_planned(folder, cases))
        err_console.print(f"Resuming {folder.path}: {done} of {len(cases)} cases already finished", markup=False)
        folder.meta["status"] = "running"
    else:
        if not args.suite:
            raise UsageError("convbench run: give a SUITE file, or --resume DIR")
        suite, cases, resolved = _load_cases(args, resolve=fleet is None)
        if args.dry_run:
            console.print(_matrix_table(cases))
            console.print(f"{len(cases)} cases from {args.suite}" + (f" (preset {args.preset})" if args.preset else ""), markup=False)
            _announce_interpreters(cases, resolved.interpreters)
            return EXIT_OK
        if not cases:
            raise UsageError(f"{args.suite}: the filter and preset leave no case to run")
        _announce_interpreters(cases, resolved.interpreters)
        options = _options_from(resolved, pin=fleet is None)
        pinning = _pinning(resolved) if fleet is None else None
        spec = getattr(resolved, "cpus", None)
        out = Path(args.out) if args.out else _default_out(suite.name)
        meta = run_meta(args, suite, cases, options, pinning, spec)
        try:
            folder = RunFolder.create(out, meta)
        except ResultsError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:  # --out is a file, a read-only folder, a full disk...
            raise UsageError(f"--out {out}: cannot create the run folder: {exc.strerror or exc}") from None
    if fleet:
        fleet["placement"] = fleet["placement"] or (folder.meta.get("fleet") or {}).get("placement") or []
        recorded = (folder.meta["options"].get("cpus") or {}).get("spec")
        fleet["cpus"] = str(spec) if spec else recorded
        folder.meta["fleet"] = fleet
        folder.save_meta()
    try:
        completed = _execute(folder, cases, options, folder.meta["suite"], fleet)
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
        console.print(summary_table(frame, title=escape(f"{folder.meta['suite']}: {folder.path}")))
    for line in status_lines(frame):
        console.print(f"  {line}", highlight=False, markup=False)
    for line in contention_lines(frame):
        console.print(line, highlight=False, markup=False)
    console.print(f"{len(frame)} cases: {_status_counts(frame)}. Results in {folder.path}", markup=False)
    return EXIT_OK


def run_meta(args: argparse.Namespace, suite: Any, cases: list[Case], options: Any, pinning: Any, spec: Any = None) -> dict[str, Any]:
    """run.json of a new run: the suite, its options, the planned cases, the environment."""
    from convbench.environment import capture

    return {
        "suite": suite.name,
        "suite_path": str(args.suite),
        "suite_text": Path(args.suite).read_text(),
        "preset": args.preset,
        "filter": args.filter,
        "convbench_version": __version__,
        "options": {
            "timing": options.timing.model_dump(),
            "timeout": options.timeout,
            "tolerance": options.tolerance,
            "interpreters": options.interpreters,
            "cpus": pinning.record() if pinning else {"spec": str(spec), "resolved": "on each node"} if spec else None,
        },
        "cases": [c.model_dump() for c in cases],
        "environment": {"core": {**capture(), "cpu_pinning": pinning.record() if pinning else None}, "backends": {}},
    }


def _connect_fleet(args: argparse.Namespace) -> dict[str, Any]:
    """Check ``--place`` and connect to the Ray cluster of ``--cluster`` (before any run
    folder is made); a missing ray or an unreachable cluster is a usage error."""
    from convbench.fleet import FleetError, connect

    try:
        return connect(args.cluster, args.place or [])
    except FleetError as exc:
        raise UsageError(str(exc)) from None


def _announce_interpreters(cases: list[Case], interpreters: dict[str, str]) -> None:
    """Say which programs the workers will be (a suite's ``interpreters:`` entry runs the
    program it names: a feature, so it is said before anything starts)."""
    from convbench.runner import interpreter_for

    for backend in dict.fromkeys(c.backend for c in cases):
        source = " (the suite's interpreters:)" if backend in interpreters else ""
        err_console.print(f"{backend} workers: {interpreter_for(backend, interpreters)}{source}", markup=False, highlight=False)


def cmd_check(args: argparse.Namespace) -> int:
    import pandas as pd

    from convbench.results import RunFolder

    suite, cases, resolved = _load_cases(args)
    if not cases:  # a gate that checks nothing must not pass
        raise UsageError(f"{args.suite}: the filter and preset leave no case to check")
    _announce_interpreters(cases, resolved.interpreters)
    options = _options_from(resolved, verify_only=True)
    with tempfile.TemporaryDirectory(prefix="convbench-check-") as tmp:
        folder = RunFolder.create(Path(tmp) / "run", {"suite": suite.name, "cases": []})
        if not _execute(folder, cases, options, f"check {suite.name}"):
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
    console.print(f"{len(frame)} cases: {_status_counts(frame)}")
    return EXIT_FAIL if failed else EXIT_OK


def backend_infos(interpreters: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Each registered backend's info, asked of a worker in its own interpreter."""
    from convbench.backend import backend_names
    from convbench.runner import interpreter_for

    infos = {}
    for name in backend_names():
        python = interpreter_for(name, interpreters)
        try:
            out = subprocess.run(
                [python, "-m", "convbench.worker", "--backend", name, "--info"],
                capture_output=True, text=True, timeout=180, check=False,
            )  # fmt: skip
            hello = json.loads(out.stdout.splitlines()[0])
            infos[name] = {**hello["info"], "python": hello.get("python")}
        except (OSError, subprocess.TimeoutExpired, IndexError, json.JSONDecodeError, KeyError) as exc:
            infos[name] = {"name": name, "available": False, "reason": f"worker with {python} failed: {exc}"}
    return infos


def _workloads_table() -> Table:
    """Every workload kind; networks at their default parameters and every named
    configuration, with its figures against the published ones."""
    from convbench.workloads import catalogue
    from convbench.workloads.render import published_figures

    table = Table(title="workloads (batch 1; MACs: multiply-adds of convs and FC; parameters: trainable)")
    for col in ("kind", "configuration", "input", "parameters", "MACs (M)", "published", "agrees", "source"):
        table.add_column(col, justify="right" if col in ("parameters", "MACs (M)") else "left")
    for r in catalogue():
        if "macs" not in r:
            table.add_row(r["kind"], "-", "", "", "", "", "", r["description"])
            continue
        pub = r["published"]
        shown = published_figures(r)
        agrees = "-" if not shown else "[green]yes[/]" if not r["mismatches"] else f"[red]{'; '.join(r['mismatches'])}[/]"
        note = f"{pub.source}{' (' + pub.note + ')' if pub.note else ''}" if pub else r["description"]
        table.add_row(r["kind"], r["config"], "x".join(map(str, r["input"])), f"{r['parameters']:,}", f"{r['macs'] / 1e6:.2f}", shown, agrees, note)
    return table


def _suites_table() -> Table:
    """The packaged suites: name, description, workloads and cases (all presets' own counts aside)."""
    from convbench.suite import SuiteError, expand, load_suite, packaged_suites

    table = Table(title="suites installed with convbench (run one by name: convbench run NAME)")
    for col in ("name", "description", "workloads", "cases", "presets", "file"):
        table.add_column(col, justify="right" if col in ("workloads", "cases") else "left")
    for name, path in packaged_suites().items():
        try:
            suite = load_suite(path)
        except SuiteError as exc:
            table.add_row(escape(name), f"[red]invalid: {escape(str(exc))}[/]", "", "", "", escape(str(path)))
            continue
        table.add_row(
            escape(name), escape(suite.description or ""), str(len(suite.workloads)), str(len(expand(suite))),
            escape(", ".join(suite.presets)), escape(str(path)),
        )  # fmt: skip
    return table


def cmd_list(args: argparse.Namespace) -> int:
    from convbench.variants import VARIANTS
    from convbench.workloads import WORKLOADS

    if args.workloads and args.format == "markdown":
        from convbench.workloads.render import markdown_table

        sys.stdout.write(markdown_table())
        return EXIT_OK
    if args.workloads:
        console.print(_workloads_table())
        return EXIT_OK
    if args.suites:
        console.print(_suites_table())
        return EXIT_OK
    if args.suite:
        suite, _, _ = _load_cases(argparse.Namespace(suite=args.suite, preset=None, filter=None))
        table = Table(title=escape(f"workloads of {args.suite} (batch 1)"))
        for col in ("id", "kind", "params", "input", "parameters", "MACs"):
            table.add_column(col, justify="right" if col in ("parameters", "MACs") else "left")
        for w in suite.workloads:
            g = WORKLOADS[w.kind].build(w.params, 1)
            table.add_row(w.id, w.kind, escape(json.dumps(w.params, sort_keys=True)), "x".join(map(str, g.inputs[0].shape)), f"{g.param_count():,}", f"{g.macs():,}")
        console.print(table)
    table = Table(title="workload kinds (networks at their default parameters, batch 1)")
    for col in ("kind", "family", "description", "parameters", "MACs"):
        table.add_column(col)
    for kind in WORKLOADS.values():
        params = macs = ""
        if kind.family == "network":
            g = kind.build({}, 1)
            params, macs = f"{g.param_count():,}", f"{g.macs():,}"
        table.add_row(kind.name, kind.family, kind.description, params, macs)
    console.print(table)
    table = Table(title="variants")
    for col in ("variant", "defaults", "description"):
        table.add_column(col)
    for v in VARIANTS.values():
        table.add_row(v.name, json.dumps(v.defaults), v.description)
    console.print(table)
    console.print(_backends_table(backend_infos()))
    return EXIT_OK


def _backends_table(infos: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="backends")
    for col in ("backend", "available", "version", "devices", "python / reason"):
        table.add_column(col)
    for name, info in infos.items():
        ok = "[green]yes[/]" if info.get("available") else "[red]no[/]"
        note = info.get("python") if info.get("available") else info.get("reason")
        table.add_row(escape(name), ok, escape(str(info.get("version") or "-")), escape(", ".join(info.get("devices") or [])), escape(str(note or "")))
    return table


def cmd_env(args: argparse.Namespace) -> int:
    from convbench.environment import capture, format_environment

    env = capture()
    infos = backend_infos()
    if args.json:
        print(json.dumps({"core": env, "backends": infos}, indent=2, default=str))
        return EXIT_OK
    console.print(format_environment(env))
    console.print(_backends_table(infos))
    for name, info in infos.items():
        if info.get("environment"):
            console.print(format_environment({f"{name}.{k}": v for k, v in info["environment"].items()}))
    return EXIT_OK


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convbench", description="Benchmark the convolutions of compact CNNs across frameworks.")
    parser.add_argument("--version", action="version", version=f"convbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

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

    lst = sub.add_parser("list", help="workloads, variants and backends")
    lst.add_argument("suite", nargs="?", help="also list this suite's workloads")
    lst.add_argument("--suites", action="store_true", help="only the suites installed with convbench (run one by its name: convbench run depthwise)")
    lst.add_argument("--workloads", action="store_true", help="only the workloads: networks and their named configurations with parameters and MACs against the published figures")
    lst.add_argument("--format", choices=["table", "markdown"], default="table", help="with --workloads: a terminal table or Markdown (docs/networks.md is the latter)")
    lst.set_defaults(func=cmd_list)

    env = sub.add_parser("env", help="the machine and software a run would record")
    env.add_argument("--json", action="store_true")
    env.set_defaults(func=cmd_env)

    from convbench.commands import register_all

    register_all(sub)
    return parser


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (a CI timeout, ``kill``) ends a run as Ctrl-C does: finished cases kept,
    the folder marked interrupted, the resume command printed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except UsageError as exc:
        from rich.markup import escape

        err_console.print(f"[bold red]error[/]: {escape(str(exc))}", highlight=False)  # "[fleet]" is not markup
        return EXIT_USAGE
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: subcommands raise
    # convbench.cli.UsageError, which a __main__.UsageError handler would not catch.
    from convbench.cli import main as _main

    sys.exit(_main())
