"""What the subcommands share: the consoles, the usage error and exit codes, loading a
suite's cases, runner options, the default run folder, and running cases with a
progress bar. Below every command module (a command never imports another, nor
:mod:`convbench.cli`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import socket
import subprocess
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


def load_cases(args: argparse.Namespace, resolve: bool = True) -> tuple[Any, list[Case], Any]:
    """Suite, its expanded (preset, filter) cases and its resolved options; ``resolve``
    sets unset CPU threads to this machine's cores (a fleet leaves that to each node)."""
    from convbench.runner import resolve_threads
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
    pinning = pinning_for(resolved, option) if resolve else None
    cores = len(pinning.cpus) if pinning else None
    return suite, [resolve_threads(c, cores) for c in cases] if resolve else cases, resolved


def pinning_for(resolved: Any, option: str = "cpus"):  # noqa: ANN202 - Pinning | None
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


def default_out(label: str) -> Path:
    """``results/LABEL-TIME-HOST`` with LABEL (a suite's name, which the suite file sets)
    and the host name made safe path components: a name like ``../../x`` or ``/etc``
    stays inside ``results/``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{slug(label)}-{stamp}-{slug(socket.gethostname())}"


def options_from(resolved: Any, verify_only: bool = False, pin: bool = True):  # noqa: ANN202
    """Runner options; ``pin=False`` leaves the ``cpus`` spec to the machines that run
    the cases (a fleet: each node resolves it against its own CPUs)."""
    from convbench.runner import RunOptions

    pinning = pinning_for(resolved) if pin else None
    return RunOptions(
        timing=resolved.timing,
        timeout=resolved.timeout,
        tolerance=dict(resolved.tolerance),
        interpreters={k: str(v) for k, v in resolved.interpreters.items()},
        verify_only=verify_only,
        cpus=pinning.cpus if pinning else None,
    )


def execute(folder, cases: list[Case], options, title: str, fleet: dict[str, Any] | None = None, runner: Any = None, total: int | None = None) -> bool:  # noqa: ANN001
    """Run ``cases`` into ``folder`` with a progress bar; False when interrupted.
    ``runner`` (called with the result callback) replaces the local runner (``ab``)."""
    from convbench.launch import make_runner
    from convbench.runner import finished_planned  # unset threads (a fleet's plan) match any

    todo = total if total is not None else len(cases) - len(finished_planned(folder, cases))
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    # No refresh thread: redrawing ten times a second wakes this process while the worker
    # times on every core, and a task waiting for a CPU is what the quiet guard drops rounds
    # for; the bar is redrawn when a case finishes instead.
    with Progress(*columns, console=err_console, transient=False, auto_refresh=False) as progress:
        title = escape(title)  # the suite's name: text, not markup
        task = progress.add_task(title, total=todo)

        def on_result(row: dict[str, Any]) -> None:
            case = escape(f"{row['workload']} {row['variant']} {row['mode']} b{row['batch']} -> {row['status']}")
            progress.update(task, advance=1, description=f"{title}: {case}", refresh=True)

        # --cluster: convbench.fleet places the cases on a Ray cluster
        chosen = runner(on_result) if runner is not None else make_runner(folder, options, on_result, fleet)
        try:
            chosen.run(cases)
        except KeyboardInterrupt:
            return False
    return True


def status_counts(frame) -> str:  # noqa: ANN001
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    return ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "mismatch", "skipped", "error"))


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


def announce_interpreters(cases: list[Case], interpreters: dict[str, str]) -> None:
    """Say which programs the workers will be (a suite's ``interpreters:`` entry runs the
    program it names: a feature, so it is said before anything starts)."""
    from convbench.runner import interpreter_for

    for backend in dict.fromkeys(c.backend for c in cases):
        source = " (the suite's interpreters:)" if backend in interpreters else ""
        err_console.print(f"{backend} workers: {interpreter_for(backend, interpreters)}{source}", markup=False, highlight=False)


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
